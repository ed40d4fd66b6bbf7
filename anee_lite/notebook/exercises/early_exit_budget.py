"""Checks of notebook 03 (early exit under a budget): the seed's budget rule, perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...budget import budget_exit_layer
from ...core.metrics import perplexity
from ._convention import ExerciseError, call, correct, exercise, number

_BUDGET_CASES = [(30, 0.7, 2, 0.1), (12, 1.0, 2, 0.1), (12, 0.5, 2, 0.1), (12, 0.05, 2, 0.1), (30, 0.0, 0, 0.1),
                 (30, 1.0, 2, 0.0), (10, 0.3, 2, 0.1), (24, 0.55, 4, 0.2), (7, 0.9, 1, 0.25), (30, 0.4, 30, 0.1)]


@exercise("Budget rule")
def check_budget_rule(fn: Callable | None) -> None:
    """Exercise: ``fn(n_layers, energy_budget, min_layers, exit_budget_threshold) -> layers run``, the seed's rule."""
    name = "Budget rule"
    for n_layers, budget, min_layers, threshold in _BUDGET_CASES:
        expected = budget_exit_layer(n_layers, budget, min_layers, threshold)
        got = number(name, call(name, fn, n_layers, budget, min_layers, threshold), whole=True)
        if got == expected:
            continue
        case = f"n_layers={n_layers}, energy_budget={budget}, min_layers={min_layers}, threshold={threshold}"
        if isinstance(got, int) and got == expected - 1 and budget - got / n_layers < threshold:
            raise ExerciseError(
                f"{name}: for {case} you return {got}, one layer short. Before layer {got} the remaining "
                f"budget is {budget} - {got}/{n_layers} = {budget - got / n_layers!r} in floating point, not "
                f"{round(budget - got / n_layers, 9)}: compare with a small slack (remaining < threshold - 1e-9).")
        raise ExerciseError(f"{name}: for {case} you return {got!r}, not what the rule gives. Run at least min_layers; "
                            "after each layer the remaining budget shrinks by 1/n_layers; stop once it falls "
                            "below the threshold.")
    correct(name, f"({len(_BUDGET_CASES)} settings agree with budget_exit_layer)")


@exercise("Perplexity")
def check_perplexity(fn: Callable | None) -> None:
    """Exercise: ``fn(logits [B, T, V], ids [B, T]) -> float``, the perplexity of each next token."""
    name = "Perplexity"
    gen = torch.Generator().manual_seed(4)
    logits = 2 * torch.randn(2, 6, 11, generator=gen)  # [B, T, V]
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    expected = perplexity(logits, ids)
    got = float(number(name, call(name, fn, logits, ids)))
    if math.isclose(got, expected, rel_tol=1e-4):
        uniform = number(name, call(name, fn, torch.zeros(1, 5, 11), ids[:1, :5]))
        if not math.isclose(float(uniform), 11.0, rel_tol=1e-4):
            raise ExerciseError(f"{name}: uniform logits over 11 tokens should give 11, got {float(uniform):.4g}.")
        correct(name)
        return
    log_probs = logits.log_softmax(-1)
    unshifted = float((-log_probs.gather(-1, ids[..., None])).mean().exp())
    if math.isclose(got, unshifted, rel_tol=1e-4):
        raise ExerciseError(f"{name}: logits[:, t] predict ids[:, t + 1]; you scored each token against its own "
                            "position. Drop the last logits and the first id.")
    if math.isclose(got, math.log(expected), rel_tol=1e-4):
        raise ExerciseError(f"{name}: that is the mean negative log-likelihood; perplexity is its exp.")
    raise ExerciseError(f"{name}: wrong value ({got:.4g}): perplexity is exp(mean over positions of "
                        "-log softmax(logits[:, t])[ids[:, t + 1]]).")
