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
testing correction). The exact bound assumes the calibration tokens are independent draws from the
text the model will see. Tokens of one text are not independent: a hard paragraph makes several
hard tokens in a row, and an early exit's frozen state drags the tokens after it down with it.
So when the agreements are known per chunk (each chunk decoded from its own empty cache, hence
independent of the others), the bound counts the *effective* number of tokens: n divided by the
design effect, the ratio of the variance of the agreement rate measured between chunks to the
binomial variance (Kish's correction for cluster samples). The guarantee then covers chunks drawn
like the calibration chunks; text of another kind is not covered at all.
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


def effective_tokens(agreements: list[int], tokens: list[int]) -> float:
    """How many independent tokens per-chunk agreement counts are worth: n / design effect, at most n.

    The agreement rate p = sum(agreements) / n has, between chunks, the cluster-sample variance
    C / (C - 1) * sum((a_i - p m_i)^2) / n^2 (C chunks, a_i of m_i tokens agreeing); an independent
    sample of n' tokens has variance p (1 - p) / n'. Equating the two gives n'.

    Args:
        agreements: per chunk, tokens whose top-1 equals the full model's.
        tokens: per chunk, tokens decoded (same length as ``agreements``, each >= 1).
    """
    if len(agreements) != len(tokens) or not tokens or min(tokens) < 1:
        raise ValueError(f"agreements and tokens must be per-chunk counts of one length with >= 1 token each, "
                         f"got {len(agreements)} and {len(tokens)}")
    n, k, chunks = sum(tokens), sum(agreements), len(tokens)
    p = k / n
    if chunks < 2 or p in (0.0, 1.0):
        return float(n)  # no spread to measure: nothing to correct
    between = chunks / (chunks - 1) * sum((a - p * m) ** 2 for a, m in zip(agreements, tokens)) / n**2
    return float(n) if between <= 0 else min(float(n), p * (1 - p) / between)


def clustered_lower_bound(agreements: list[int], tokens: list[int], delta: float = 0.1) -> float:
    """:func:`clopper_pearson_lower` on the effective number of tokens of per-chunk counts (see the module)."""
    n_eff = effective_tokens(agreements, tokens)
    p = sum(agreements) / sum(tokens)
    n = max(1, round(n_eff))
    return clopper_pearson_lower(min(n, round(p * n)), n, delta)


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
    # per chunk (decoded independently): agreements and tokens; the bound then counts effective tokens
    chunk_agreements: list[int] | None = None
    chunk_tokens: list[int] | None = None
    bytes_fraction: float | None = None  # memory traffic against the full model's (what batch-1 decoding pays)

    @property
    def agreement(self) -> float:
        return self.agreements / self.tokens


COST_MEASURES = ("cost_fraction", "bytes_fraction")


def fixed_sequence_select(tested: list[CandidateThreshold], target: float, delta: float,
                          cheapest_by: str = "cost_fraction") -> CandidateThreshold | None:
    """Mark which candidates pass the fixed-sequence test and return the cheapest that passed.

    Args:
        tested: candidates ordered from the safest to the cheapest; their ``passed`` flags are set.
        target: the agreement to guarantee, in (0, 1].
        delta: the allowed probability that a passed threshold misses ``target``.
        cheapest_by: ``"cost_fraction"`` (FLOPs) or ``"bytes_fraction"`` (memory traffic: what a catch-up
            decoding saves, as its FLOPs do not fall with exits).

    Returns:
        The passed candidate with the lowest ``cheapest_by``, or None if the safest one fails.
    """
    if cheapest_by not in COST_MEASURES:
        raise ValueError(f"cheapest_by must be one of {list(COST_MEASURES)}, got {cheapest_by!r}")
    target = check_target_agreement(target)
    delta = check_delta(delta)  # here too: with no candidates the loop below would never look at it
    for t in tested:
        t.lower_bound = (clopper_pearson_lower(t.agreements, t.tokens, delta) if t.chunk_agreements is None
                         else clustered_lower_bound(t.chunk_agreements, t.chunk_tokens, delta))
        t.passed = False
    for t in tested:
        if t.lower_bound < target:
            break
        t.passed = True
    passed = [t for t in tested if t.passed]
    if cheapest_by == "bytes_fraction" and any(t.bytes_fraction is None for t in passed):
        raise ValueError("cheapest_by='bytes_fraction' needs every candidate's bytes_fraction (summarize gives it)")
    return min(passed, key=lambda t: getattr(t, cheapest_by)) if passed else None
