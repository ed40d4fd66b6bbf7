"""A stated guarantee for a calibrated threshold: exact binomial bounds and fixed-sequence testing.

CALM (Schuster et al. 2022, "Confident Adaptive Language Modeling") and Learn-then-Test (Angelopoulos
et al. 2021, "Learn then Test: Calibrating Predictive Algorithms to Achieve Risk Control") choose an
early-exit threshold so that a quality promise holds *with a stated confidence*, not only on the
calibration text. Here the promise is top-1 agreement with the full model >= ``target``:

1. Order the candidate thresholds from the safest (exits least) to the cheapest.
2. Measure each candidate's agreement on n calibration tokens, by real decoding.
3. Walk the order; a threshold passes when the one-sided Clopper-Pearson lower confidence bound
   on its agreement at confidence ``1 - delta`` is >= ``target``; stop at the first failure.
4. Take the cheapest threshold that passed.

Because each step tests only if all safer ones passed, the chance that *any* passed threshold in
fact agrees less than ``target`` is at most ``delta`` (fixed-sequence testing needs no multiple-
testing correction). The guarantee assumes the calibration tokens are independent draws from the
text the model will see. Tokens of one text are not independent (a hard paragraph makes several
hard tokens in a row), so the real confidence is lower than ``1 - delta`` says; the bound is a
guide, and the held-out measurement is the check. Text of another kind is not covered at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.validation import check_fraction, check_int


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly in log space (no scipy)."""
    k, n = check_int("k", k, low=0), check_int("n", n, low=0)
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    if k == 0 or p >= 1.0:
        return 1.0
    if p <= 0.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def check_target_agreement(target_agreement) -> float:
    """The agreement to calibrate for: a number in (0, 1] (the one place this is checked)."""
    target = check_fraction("target_agreement", target_agreement)
    if target <= 0:
        raise ValueError(f"target_agreement must be in (0, 1], got {target}")
    return target


def check_delta(delta) -> float:
    """An allowed error probability: a number in (0, 1) (the one place this is checked)."""
    delta = check_fraction("delta", delta)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return delta


def clopper_pearson_lower(k: int, n: int, delta: float = 0.1) -> float:
    """One-sided exact lower confidence bound on a success rate from k successes in n trials.

    The p with P(Binomial(n, p) >= k) = delta: with probability >= 1 - delta over the sample, the
    true rate is >= the returned value (independent trials assumed). Found by bisection on p.

    Args:
        k: successes, 0..n.
        n: trials, >= 1.
        delta: allowed error probability, in (0, 1).
    """
    n = check_int("n", n, low=1)
    k = check_int("k", k, low=0, high=n)
    delta = check_delta(delta)
    if k == 0:
        return 0.0
    lo, hi = 0.0, 1.0  # binomial_tail(k, n, p) grows with p
    for _ in range(60):  # 2**-60: below float resolution
        mid = (lo + hi) / 2
        if binomial_tail(k, n, mid) < delta:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class CandidateThreshold:
    """One candidate threshold as measured on the calibration tokens."""

    threshold: float
    agreements: int  # tokens whose top-1 equals the full model's
    tokens: int
    lower_bound: float  # Clopper-Pearson lower bound on agreement at confidence 1 - delta
    cost_fraction: float
    mean_layers_fraction: float
    passed: bool = False  # reached by the fixed sequence with lower_bound >= target

    @property
    def agreement(self) -> float:
        return self.agreements / self.tokens


def fixed_sequence_select(tested: list[CandidateThreshold], target: float, delta: float) -> CandidateThreshold | None:
    """Mark which candidates pass the fixed-sequence test and return the cheapest that passed.

    Args:
        tested: candidates ordered from the safest to the cheapest; their ``passed`` flags are set.
        target: the agreement to guarantee, in (0, 1].
        delta: the allowed probability that a passed threshold misses ``target``.

    Returns:
        The passed candidate with the lowest ``cost_fraction``, or None if the safest one fails.
    """
    target = check_target_agreement(target)
    delta = check_delta(delta)  # here too: with no candidates the loop below would never look at it
    for t in tested:
        t.lower_bound = clopper_pearson_lower(t.agreements, t.tokens, delta)
        t.passed = False
    for t in tested:
        if t.lower_bound < target:
            break
        t.passed = True
    passed = [t for t in tested if t.passed]
    return min(passed, key=lambda t: t.cost_fraction) if passed else None
