"""Quality of early exit on real text: the shipped evaluation texts and quality-vs-budget curves."""

from __future__ import annotations

from importlib import resources

import torch
from torch import Tensor

from .budget import budget_exit_layer
from .metrics import mean_kl, perplexity, top1_agreement
from .validation import check_int

EVAL_TEXTS = ("python_docs_heldout", "python_docs_calibration", "kjv_heldout", "kjv_calibration")


def eval_text(name: str = "python_docs_heldout") -> str:
    """One of the evaluation texts shipped in ``anee_lite/data`` (see its README for sources).

    Raises:
        ValueError: ``name`` is not one of :data:`EVAL_TEXTS`.
    """
    if name not in EVAL_TEXTS:
        raise ValueError(f"unknown evaluation text {name!r}; choose one of {', '.join(EVAL_TEXTS)}")
    return resources.files("anee_lite").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")


def eval_ids(tokenizer, name: str = "python_docs_heldout", n_tokens: int = 300) -> Tensor:
    """The first ``n_tokens`` (>= 1) tokens of an evaluation text, as [1, n_tokens] ids."""
    n_tokens = check_int("n_tokens", n_tokens, low=1)
    ids = tokenizer(eval_text(name))["input_ids"][:n_tokens]
    return torch.tensor([ids])


@torch.no_grad()
def quality_vs_budget(model, input_ids: Tensor, budgets, min_layers: int = 2,
                      exit_budget_threshold: float = 0.1) -> list[dict]:
    """Top-1 agreement with the full model, perplexity and KL for each energy budget.

    The budget makes every token run the same number of layers, so the logits under a budget
    equal the logit lens after that many layers: one full forward serves every budget.

    Args:
        model: an :class:`anee_lite.ANEEWrapper`.
        input_ids: [1, T] token ids of the text.
        budgets: the energy budgets to evaluate, each in [0, 1].
        min_layers: layers that always run.
        exit_budget_threshold: the seed's exit threshold.

    Returns:
        One dict per budget: ``energy_budget``, ``layers_executed``, ``n_layers``,
        ``top1_agreement``, ``perplexity``, ``mean_kl`` and the full model's ``full_perplexity``.
    """
    unrolled = model.model
    n_layers = unrolled.dims.n_layers
    full = unrolled.forward(input_ids, return_resid=True)
    resid = full.resid_stack()  # [n_layers + 1, 1, T, d_model]
    full_perplexity = perplexity(full.logits, input_ids)
    by_depth: dict[int, dict] = {}  # several budgets buy the same depth: unembed each depth once
    rows = []
    for budget in budgets:
        n = budget_exit_layer(n_layers, budget, min_layers, exit_budget_threshold)
        if n not in by_depth:
            logits = full.logits if n == n_layers else unrolled.lens(resid[n])  # [1, T, d_vocab]
            by_depth[n] = {
                "top1_agreement": top1_agreement(logits, full.logits),
                "perplexity": perplexity(logits, input_ids),
                "mean_kl": mean_kl(logits, full.logits),
            }
        rows.append({"energy_budget": float(budget), "layers_executed": n, "n_layers": n_layers,
                     **by_depth[n], "full_perplexity": full_perplexity})
    return rows
