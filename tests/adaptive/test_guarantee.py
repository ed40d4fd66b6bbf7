"""The exact binomial bound and fixed-sequence testing, against hand-computed values."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite.adaptive.guarantee import (
    CandidateThreshold,
    binomial_tail,
    clopper_pearson_lower,
    clustered_lower_bound,
    effective_tokens,
    fixed_sequence_select,
)


def test_binomial_tail_small_cases_by_hand():
    assert binomial_tail(2, 3, 0.5) == pytest.approx(0.5)  # (3 + 1) / 8
    assert binomial_tail(3, 3, 0.2) == pytest.approx(0.008)
    assert binomial_tail(1, 4, 0.1) == pytest.approx(1 - 0.9 ** 4)
    assert binomial_tail(0, 5, 0.3) == 1.0


@pytest.mark.parametrize("k,n,delta,expected", [
    (10, 10, 0.1, 0.1 ** (1 / 10)),  # all successes: p^n = delta
    (1, 10, 0.1, 1 - 0.9 ** (1 / 10)),  # one success: 1 - (1 - p)^n = delta
    (5, 10, 0.025, 0.18709),  # the textbook 95% two-sided interval for 5/10 is [0.1871, 0.8129]
    (90, 100, 0.025, 0.82378),  # ... and for 90/100 it is [0.8238, 0.9510]
    (0, 7, 0.1, 0.0),
])
def test_clopper_pearson_lower_matches_known_quantiles(k, n, delta, expected):
    assert clopper_pearson_lower(k, n, delta) == pytest.approx(expected, abs=5e-5)


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 400), st.data())
def test_bound_is_below_the_rate_and_tight_at_delta(n, data):
    k = data.draw(st.integers(1, n))
    lo = clopper_pearson_lower(k, n, 0.1)
    assert 0 < lo <= k / n
    assert binomial_tail(k, n, lo) == pytest.approx(0.1, abs=1e-6)  # the defining equation


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, math.nan])
def test_bound_refuses_delta_outside_the_open_interval(bad):
    with pytest.raises(ValueError, match="delta"):
        clopper_pearson_lower(5, 10, bad)


def test_bound_refuses_more_successes_than_trials():
    with pytest.raises(ValueError, match="k must be"):
        clopper_pearson_lower(11, 10, 0.1)


def _t(thr, k, cost):
    return CandidateThreshold(threshold=thr, agreements=k, tokens=1000, lower_bound=0.0, cost_fraction=cost,
                           mean_layers_fraction=cost)


def test_fixed_sequence_stops_at_the_first_failure():
    # 0.9 target, n=1000, delta 0.1: 920/1000 has bound ~0.906 (passes), 895/1000 ~0.879 (fails)
    tested = [_t(0.99, 1000, 1.0), _t(0.9, 950, 0.9), _t(0.8, 920, 0.8), _t(0.7, 895, 0.7), _t(0.6, 990, 0.5)]
    best = fixed_sequence_select(tested, target=0.9, delta=0.1)
    assert best.threshold == 0.8  # the 0.6 candidate looks great but comes after a failure: never tested
    assert [t.passed for t in tested] == [True, True, True, False, False]
    assert tested[2].lower_bound == pytest.approx(clopper_pearson_lower(920, 1000, 0.1))
    assert tested[2].lower_bound >= 0.9 > tested[3].lower_bound


def test_fixed_sequence_can_pick_the_cheapest_by_bytes():
    """Under catch-up FLOPs barely move with the threshold; the memory traffic is what an exit saves."""
    tested = [_t(0.99, 1000, 1.0), _t(0.9, 950, 1.01), _t(0.8, 930, 1.02)]
    for t, b in zip(tested, [1.0, 0.9, 0.8]):
        t.bytes_fraction = b
    assert fixed_sequence_select(tested, 0.9, 0.1).threshold == 0.99  # by FLOPs, the safest is cheapest
    assert fixed_sequence_select(tested, 0.9, 0.1, cheapest_by="bytes_fraction").threshold == 0.8
    with pytest.raises(ValueError, match="cheapest_by must be one of"):
        fixed_sequence_select(tested, 0.9, 0.1, cheapest_by="wall")
    tested[1].bytes_fraction = None
    with pytest.raises(ValueError, match="needs every candidate's bytes_fraction"):
        fixed_sequence_select(tested, 0.9, 0.1, cheapest_by="bytes_fraction")


def test_fixed_sequence_returns_none_when_the_safest_fails():
    assert fixed_sequence_select([_t(0.99, 800, 1.0)], target=0.9, delta=0.1) is None


@given(target=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), st.just(math.nan)))
@settings(max_examples=25, deadline=None)
def test_fixed_sequence_refuses_a_target_outside_0_1(target):
    # NaN used to pass every candidate: `bound < nan` is never True.
    with pytest.raises(ValueError, match="target_agreement must be in"):
        fixed_sequence_select([_t(0.99, 800, 1.0)], target=target, delta=0.1)


@pytest.mark.parametrize("bad,error", [(0.0, ValueError), (1.5, ValueError), (math.nan, ValueError),
                                       ("0.1", TypeError), (True, TypeError)])
def test_fixed_sequence_refuses_a_bad_delta_even_without_candidates(bad, error):
    with pytest.raises(error, match="delta"):
        fixed_sequence_select([], target=0.9, delta=bad)


def test_effective_tokens_by_hand():
    # chunks that agree all-or-nothing are worth one token each: p = 0.5, between-chunk variance
    # 4/3 * 4 * 10^2 / 40^2 = 1/3 * ... = p (1 - p) / 3  ->  3 tokens
    assert effective_tokens([10, 0, 10, 0], [10] * 4) == pytest.approx(0.25 / (4 / 3 * 4 * 25 / 1600))
    assert effective_tokens([10, 0, 10, 0], [10] * 4) == pytest.approx(3.0)
    # identical chunks show no spread beyond the binomial's: nothing is lost (capped at n)
    assert effective_tokens([5, 5, 5, 5], [10] * 4) == 40.0
    assert effective_tokens([7], [10]) == 10.0  # one chunk: no spread to measure
    assert effective_tokens([10, 10], [10, 10]) == 20.0  # p = 1


def test_clustered_bound_is_the_exact_bound_on_the_effective_sample():
    assert clustered_lower_bound([10, 0, 10, 0], [10] * 4, 0.1) == pytest.approx(clopper_pearson_lower(2, 3, 0.1))
    assert clustered_lower_bound([5, 5, 5, 5], [10] * 4, 0.1) == pytest.approx(clopper_pearson_lower(20, 40, 0.1))
    with pytest.raises(ValueError, match="per-chunk counts"):
        effective_tokens([1, 2], [3])


def test_fixed_sequence_uses_the_chunks_when_it_has_them():
    spread = CandidateThreshold(0.5, 20, 40, 0.0, 0.6, 0.6, chunk_agreements=[10, 0, 10, 0], chunk_tokens=[10] * 4)
    flat = CandidateThreshold(0.5, 20, 40, 0.0, 0.6, 0.6)
    fixed_sequence_select([spread], 0.1, 0.1)
    fixed_sequence_select([flat], 0.1, 0.1)
    assert spread.lower_bound == pytest.approx(clopper_pearson_lower(2, 3, 0.1))
    assert spread.lower_bound < flat.lower_bound == pytest.approx(clopper_pearson_lower(20, 40, 0.1))
