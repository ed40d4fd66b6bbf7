"""Checks of notebook 05 (adaptive exit): the confidence score, the Pareto front, the Clopper-Pearson lower bound."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...adaptive.calibration import CurvePoint, pareto_front
from ...adaptive.guarantee import clopper_pearson_lower
from ._convention import ExerciseError, call, close, correct, exercise, tensor_like


@exercise("Confidence score")
def check_confidence_score(fn: Callable | None, controller) -> None:
    """Exercise: ``fn(logits) -> [B, T]`` top-1 softmax probability, checked against ``controller.score``.

    Args:
        fn: the learner's function of lens logits [B, T, d_vocab].
        controller: a ``confidence`` controller (:class:`~anee_lite.adaptive.controllers.ConfidenceExit`);
            the check reads its lens at every allowed exit layer on random residuals.
    """
    name = "Confidence score"
    gen = torch.Generator().manual_seed(11)
    d_model = controller.lens.model.dims.d_model
    for layer in controller.exit_layers_allowed:
        resid = 3 * torch.randn(2, 5, d_model, generator=gen)  # [B, T, d_model]
        with torch.no_grad():
            expected = controller.score(layer, resid)  # [B, T]
            logits = controller.log_probs(layer, resid) + 7 * torch.randn(2, 5, 1, generator=gen)  # [B, T, d_vocab]
        got = tensor_like(name, call(name, fn, logits.clone()), expected)
        if close(got.float(), expected, atol=1e-4):
            continue
        if got.dtype in (torch.int64, torch.int32):
            raise ExerciseError(f"{name}: you return token ids (argmax); return the top-1 *probability*.")
        if close(got.float(), logits.max(-1).values, atol=1e-4):
            raise ExerciseError(f"{name}: that is the largest logit; turn logits into probabilities first (softmax).")
        if (got > 1 + 1e-6).any() or (got < 0).any():
            raise ExerciseError(f"{name}: a probability lies in [0, 1]; you return values in "
                                f"[{got.min().item():.3g}, {got.max().item():.3g}].")
        raise ExerciseError(f"{name}: wrong values at layer {layer}: take the softmax over the last dimension "
                            "(the vocabulary), then its largest value for each token.")
    correct(name, f"(it matches ConfidenceExit.score at layers {list(controller.exit_layers_allowed)})")


@exercise("Clopper-Pearson lower bound")
def check_clopper_pearson_lower(fn: Callable | None) -> None:
    """Exercise: ``fn(k, n, delta) -> float``, the one-sided exact lower bound, checked against the library's."""
    name = "Clopper-Pearson lower bound"
    cases = [(9, 10, 0.1), (0, 5, 0.1), (50, 50, 0.1), (180, 200, 0.05), (118, 128, 0.1), (3, 40, 0.2)]
    for k, n, delta in cases:
        expected = clopper_pearson_lower(k, n, delta)
        got = call(name, fn, k, n, delta)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}") from None
        if abs(got - expected) <= 1e-4:
            continue
        if abs(got - k / n) <= 1e-9:
            raise ExerciseError(f"{name}: {got:.4f} is k/n, the measured rate; the bound lies below it "
                                "(how low can p be and still make k or more successes not too rare?).")
        if k > 0 and abs(got - clopper_pearson_lower(k, n, delta / 2)) <= 1e-4:
            raise ExerciseError(f"{name}: you used delta/2 (a two-sided interval); the bound is one-sided: "
                                "P(Binomial(n, p) >= k) = delta.")
        if got > k / n:
            raise ExerciseError(f"{name}: for k={k}, n={n} you return {got:.4f}, above k/n = {k / n:.4f}; "
                                "a lower bound must not exceed the measured rate.")
        raise ExerciseError(f"{name}: wrong for k={k}, n={n}, delta={delta} (you return {got:.4f}); the bound is "
                            "the p at which P(Binomial(n, p) >= k) equals delta (0 when k = 0): a Beta quantile.")
    correct(name, f"({len(cases)} cases agree with anee_lite.adaptive.guarantee)")


def _pareto_cases() -> list[list[tuple[float, float]]]:
    """(cost, agreement) point sets: a hand-made one with a tie and a dominated point, then random ones."""
    gen = torch.Generator().manual_seed(5)
    cases = [[(0.5, 0.7), (0.9, 0.95), (0.6, 0.65), (0.7, 0.95), (1.0, 1.0), (0.3, 0.4)]]
    for n in (8, 20):
        cost = torch.rand(n, generator=gen).round(decimals=2)  # rounded: equal costs happen
        agree = (cost + 0.3 * torch.rand(n, generator=gen)).clamp(max=1).round(decimals=2)
        cases.append(list(zip(cost.tolist(), agree.tolist())))
    return cases


@exercise("Pareto front")
def check_pareto_front(fn: Callable | None) -> None:
    """Exercise: ``fn(points) -> list`` the (cost, agreement) points no other point beats on both, by increasing cost."""
    name = "Pareto front"
    for points in _pareto_cases():
        front = pareto_front([CurvePoint(0.0, a, c, c) for c, a in points])
        expected = [(p.cost_fraction, p.agreement) for p in front]
        got = call(name, fn, list(points))
        try:
            got = [(float(c), float(a)) for c, a in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: return a list of (cost, agreement) pairs, got {type(got).__name__}") from None
        if got == expected:
            continue
        if sorted(got) == expected:
            raise ExerciseError(f"{name}: the right points, in the wrong order: sort them by increasing cost.")
        if len(got) == len(points):
            raise ExerciseError(f"{name}: you kept all {len(points)} points; drop every point that another point "
                                "beats (cheaper or equal cost and higher agreement).")
        beaten = [p for p in got if any(q[0] <= p[0] and q[1] > p[1] for q in points)]
        if beaten:
            c, a = beaten[0]
            raise ExerciseError(f"{name}: ({c}, {a}) is on your front, but a point at no more cost agrees more.")
        missing = [p for p in expected if p not in got]
        if missing:
            c, a = missing[0]
            raise ExerciseError(f"{name}: ({c}, {a}) is missing: no point is both cheaper and more agreeing.")
        raise ExerciseError(f"{name}: of two points with the same agreement, keep only the cheaper one.")
    correct(name, f"({len(_pareto_cases())} point sets agree with anee_lite.adaptive.pareto_front)")
