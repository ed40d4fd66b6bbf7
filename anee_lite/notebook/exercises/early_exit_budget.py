"""Checks of notebook 03 (early exit under a budget): the seed's budget rule, each head's direct effect read by the
logit lens, the quality cost of removing the heads it ranks last, perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ...budget import budget_exit_layer
from ...core.metrics import perplexity, top1_agreement
from ...interventions import ablate_heads, ablation_curve, heads_in_order, per_head_effects
from ._convention import ExerciseError, call, close, correct, exercise, number, tensor_like

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


def _direct_effects(z: Tensor, W_O: Tensor, readout: Tensor) -> Tensor:
    """[T, H, D] head outputs, [H * D, d] W_O, [T, d] read-out directions -> [H] mean |direct effect|."""
    return per_head_effects(z, W_O, readout).abs().mean(0)  # [T, H] -> [H]


@exercise("Direct effects")
def check_direct_effects(fn: Callable | None) -> None:
    """Exercise: ``fn(z [T, H, D], W_O [H * D, d_model], readout [T, d_model]) -> [H]``, each head's mean
    absolute direct effect on the read logit; tried on random sizes."""
    name = "Direct effects"
    gen = torch.Generator().manual_seed(11)
    for T, H, D, d in [(5, 4, 3, 7), (9, 6, 2, 5)]:
        z, W_O = torch.randn(T, H, D, generator=gen), torch.randn(H * D, d, generator=gen)
        readout = torch.randn(T, d, generator=gen)
        expected = _direct_effects(z, W_O, readout)
        got = tensor_like(name, call(name, fn, z.clone(), W_O.clone(), readout.clone()), expected)
        if close(got, expected):
            continue
        signed = per_head_effects(z, W_O, readout)  # [T, H]
        if close(got, signed.mean(0)) or close(got, signed.mean(0).abs()):
            raise ExerciseError(f"{name}: a head that pushes the logit up at one token and down at another is not "
                                "unimportant: take the absolute value of each position's effect, then the mean.")
        if close(got, signed.abs().sum(0)):
            raise ExerciseError(f"{name}: that is the sum over positions; the exercise asks for the mean.")
        swapped = _direct_effects(z, W_O.view(D, H, d).transpose(0, 1).reshape(H * D, d), readout)
        if close(got, swapped):
            raise ExerciseError(f"{name}: head h owns the rows h * D:(h + 1) * D of W_O (the heads sit side by side "
                                "in z's last axis before W_O); your slicing interleaves the heads.")
        raise ExerciseError(f"{name}: wrong values at T={T}, H={H}, D={D}. Per head: z[:, h] @ W_O[h*D:(h+1)*D] "
                            "is what it adds at each position [T, d_model]; dot it with readout per position.")
    correct(name)


def _agreement_without(model, ids: Tensor, order: Tensor, k: int) -> float:
    """Top-1 agreement with the full model once the first ``k`` heads of ``order`` are removed."""
    return ablation_curve(model, ids, order, [k])[0]


@exercise("Ablation cost")
def check_ablation_cost(fn: Callable | None, model, ids: Tensor) -> None:
    """Exercise: ``fn(model, ids [1, T], effects [n_layers, n_heads], k) -> float``: remove the ``k`` heads with the
    smallest effect (zero ablation) and return the top-1 agreement with the full model; tried on random effects."""
    name = "Ablation cost"
    dims = model.dims
    gen = torch.Generator().manual_seed(12)
    ids = ids[:, :48]
    for k in (3, dims.n_layers * dims.n_heads // 3):
        effects = torch.rand(dims.n_layers, dims.n_heads, generator=gen)  # [L, H]: an order the notebook never shows
        expected = _agreement_without(model, ids, effects.flatten().argsort(), k)
        got = float(number(name, call(name, fn, model, ids.clone(), effects.clone(), k)))
        if abs(got - expected) <= 1e-6:
            continue
        if abs(got - _agreement_without(model, ids, (-effects).flatten().argsort(), k)) <= 1e-6:
            raise ExerciseError(f"{name}: with k={k} you removed the heads with the LARGEST effects; remove the "
                                "smallest (argsort is ascending).")
        if abs(got - 1.0) <= 1e-6:
            raise ExerciseError(f"{name}: with k={k} your model agrees everywhere: were the heads removed? Pass "
                                "hooks=ablate_heads(model, {layer: [head, ...]}) to the ablated forward.")
        if abs(got - top1_agreement(model(ids, hooks=ablate_heads(model, heads_in_order(effects.flatten().argsort(), effects.shape[1], k))).logits[:, :-1],
                                    torch.nn.functional.one_hot(ids[:, 1:], dims.d_vocab).float())) <= 1e-6:
            raise ExerciseError(f"{name}: that compares with the text's next tokens (accuracy); compare the ablated "
                                "model's predictions with the FULL model's predictions instead.")
        raise ExerciseError(f"{name}: with k={k}, not the agreement the check measures. Flat index i of "
                            "effects.flatten() is layer i // n_heads, head i % n_heads; compare the argmax of the "
                            "ablated and the full logits at every position.")
    correct(name, "(two random rankings: the same heads removed and the same agreement)")
