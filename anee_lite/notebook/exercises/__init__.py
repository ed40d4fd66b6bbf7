"""Every exercise check of the series, in one convention (:mod:`._convention`).

A check takes the learner's answer (a value or a function) first. ``None``, the template's placeholder,
prints "not answered yet"; a wrong answer raises :class:`ExerciseError` with a hint that never gives the
expected answer away; a right one prints one short line. Functions the learner writes are tried on
inputs the notebook never shows (random shapes and values), so an answer tuned to the notebook's prompt
does not pass. A cell reads ``check_rms_norm(my_rms_norm)``; the checks live by chapter in this package.
"""

from ._convention import ExerciseError
from .adaptive_exit import check_clopper_pearson_lower, check_confidence_score, check_pareto_front
from .early_exit_budget import check_ablation_cost, check_budget_rule, check_direct_effects, check_perplexity
from .gpt2_internals import check_attention, check_block, check_logits, check_rms_norm, check_rotate
from .kv_cache_and_cost import check_break_even_layer, check_kv_owed, check_unembed_flops
from .logit_lens import check_first_stable_layer, check_kl_per_layer, check_lens_top_k, check_patch_hook
from .self_speculative import check_accept, check_expected_tokens
from .sparsity import check_block_influence, check_head_ablation, check_sparse_matvec
from .virtual_accelerator import check_crossover_batch, check_exit_speedup, check_matvec_intensity

__all__ = [
    "ExerciseError",
    "check_ablation_cost",
    "check_accept",
    "check_attention",
    "check_block",
    "check_block_influence",
    "check_break_even_layer",
    "check_budget_rule",
    "check_clopper_pearson_lower",
    "check_confidence_score",
    "check_crossover_batch",
    "check_direct_effects",
    "check_exit_speedup",
    "check_expected_tokens",
    "check_first_stable_layer",
    "check_head_ablation",
    "check_kl_per_layer",
    "check_kv_owed",
    "check_lens_top_k",
    "check_logits",
    "check_matvec_intensity",
    "check_pareto_front",
    "check_patch_hook",
    "check_perplexity",
    "check_rms_norm",
    "check_rotate",
    "check_sparse_matvec",
    "check_unembed_flops",
]
