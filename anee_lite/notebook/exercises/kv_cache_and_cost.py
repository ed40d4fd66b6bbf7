"""Checks of notebook 04 (KV cache and cost): the unembedding's FLOPs, the K/V a token owes (against the
real cache), the break-even layer of logit-lens checks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cost.charges import token_cost
from ._convention import ExerciseError, call, correct, exercise, number


@exercise("Unembedding FLOPs")
def check_unembed_flops(answer: int | None, dims) -> None:
    """Exercise: FLOPs of one token's unembedding (the matrix product only), from the model's sizes."""
    name = "Unembedding FLOPs"
    expected = 2 * dims.d_model * dims.d_vocab
    answer = number(name, answer)
    if answer == expected:
        correct(name, f"{expected / 1e6:.1f} MFLOPs per token.")
        return
    if answer == dims.d_model * dims.d_vocab:
        raise ExerciseError(f"{name}: that is the number of multiply-adds; each is 2 FLOPs.")
    raise ExerciseError(f"{name}: got {answer!r}. The unembedding multiplies a d_model vector by a "
                        "[d_model, d_vocab] matrix: one multiply-add per matrix entry.")


@exercise("K/V a token owes")
def check_kv_owed(fn: Callable | None, model, input_ids: Tensor) -> None:
    """Exercise: ``fn(exit_layers, n_layers) -> int``, the propagated K/V entries; checked on the real cache.

    Args:
        fn: the learner's function.
        model: the :class:`~anee_lite.core.model.UnrolledModel` to decode with.
        input_ids: [1, T] ids to decode one at a time (T >= 4).
    """
    name = "K/V a token owes"
    n = model.dims.n_layers
    gen = torch.Generator().manual_seed(5)
    cases = [[n, 2, 1, n], [n, n, n, n], [1, 1, 1, 1], [n, 1, n, 1]]
    cases += [torch.randint(1, n + 1, (input_ids.shape[1],), generator=gen).tolist() for _ in range(3)]
    for exits in cases:
        exits = [min(max(e, 1), n) for e in exits][: input_ids.shape[1]]
        cache = None
        with torch.no_grad():
            for t, e in enumerate(exits):
                cache = model(input_ids[:, t:t + 1], exit_layers=e, past_key_values=cache,
                              use_cache=True).past_key_values
        got = number(name, call(name, fn, list(exits), n), whole=True)
        if got == cache.propagated:
            continue
        eager = sum(n - e for e in exits[:-1])
        if got == eager:
            raise ExerciseError(f"{name}: for exits {exits} you count every missing entry ({got}); the cache fills "
                                "only the layers a later token runs, lazily.")
        raise ExerciseError(f"{name}: for exits {exits} (n_layers={n}) you say {got!r}, not what the real cache "
                            "propagated. Token t's entry at layer l is filled only if t stopped before l and some "
                            "later token runs layer l.")
    correct(name, f"({len(cases)} exit patterns agree with the real cache)")


@exercise("Break-even layer")
def check_break_even_layer(answer: int | None, dims, context_len: int) -> None:
    """Exercise: the smallest exit L at which L logit-lens checks make a token dearer than the full model.

    The last check's logits are the token's output, so it is not unembedded again (``unembed=False``).
    """
    name = "Break-even layer"
    full = token_cost(dims, layers_run=dims.n_layers, context_len=context_len).flops

    def with_checks(L):  # the last check's logits are the output: no second unembedding
        return token_cost(dims, layers_run=L, context_len=context_len, lens_checks=L, unembed=False).flops

    if isinstance(answer, bool) or not isinstance(answer, int) or not 1 <= answer <= dims.n_layers:
        raise ExerciseError(f"{name}: expected a layer in [1, {dims.n_layers}], got {answer!r}")
    if with_checks(answer) <= full:
        raise ExerciseError(f"{name}: at L={answer} the checked token costs {with_checks(answer) / full:.0%} of the "
                            "full model: still cheaper.")
    if answer > 1 and with_checks(answer - 1) > full:
        raise ExerciseError(f"{name}: L={answer - 1} already costs more than the full model.")
    correct(name, f"from L={answer} a lens check at every layer costs more than running them all.")
