"""Calibration keeps an exit only where it pays: measured on this machine, switched off when not faster."""

import math
import time

import pytest
import torch
from conftest import VOCAB, random_gpt2
from hypothesis import given
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.adaptive import real_calibration
from anee_lite.adaptive.controllers import make_controller
from anee_lite.adaptive.evaluate import evaluate, format_result
from anee_lite.adaptive.real_calibration import (
    SPEED_CHECK_TOKENS,
    calibrate_by_decoding,
    exit_that_pays,
    measured_time_ratio,
)
from anee_lite.lens import LogitLens


@pytest.fixture(scope="module")
def tiny():
    return UnrolledModel(random_gpt2(6))


def _chunks(n, T, seed=0):
    """n chunks of T random token ids, [1, T] each."""
    return list(torch.randint(VOCAB, (n, T), generator=torch.Generator().manual_seed(seed)).split(1))


def _slow(controller, seconds=0.05):
    """The controller with every check made ``seconds`` slower (far more than the layers an exit skips here)."""
    score = controller.score

    def slow_score(layer, resid):
        time.sleep(seconds)
        return score(layer, resid)

    controller.score = slow_score
    return controller


def test_an_exit_slower_than_the_full_model_is_switched_off(tiny):
    controller = _slow(make_controller("confidence", LogitLens(tiny), 0.5))
    threshold, speed = exit_that_pays(tiny, _chunks(2, 6), controller, 0.0, tokens=8)  # 0.0: every token exits
    assert threshold == math.inf and speed["switched_off"] and speed["threshold"] == 0.0
    assert speed["time_ratio"] > 1.5 and speed["tokens"] == 8
    assert controller.threshold == 0.5  # measuring left the caller's threshold alone


def test_the_ratio_is_measured_side_by_side_and_restores_the_threshold(tiny):
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    slow = measured_time_ratio(tiny, _chunks(2, 6), _slow(make_controller("confidence", LogitLens(tiny), 0.5)),
                               0.0, tokens=6)
    never = measured_time_ratio(tiny, _chunks(2, 6), controller, math.inf, tokens=6)  # switched off: no checks at all
    assert slow > 1.5 and 0 < never < slow and controller.threshold == 0.5  # tiny steps: only the sleeps are sure
    with pytest.raises(ValueError, match="tokens"):
        measured_time_ratio(tiny, _chunks(1, 6), controller, 0.0, tokens=0)


@pytest.mark.parametrize("ratio,kept", [(0.93, True), (1.0, False), (1.07, False)])
def test_only_a_measured_saving_keeps_the_exit(tiny, monkeypatch, ratio, kept):
    monkeypatch.setattr(real_calibration, "measured_time_ratio", lambda *a, **k: ratio)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    threshold, speed = exit_that_pays(tiny, _chunks(2, 6), controller, 0.3, tokens=100)
    assert threshold == (0.3 if kept else math.inf)
    assert speed == {"threshold": 0.3, "time_ratio": ratio, "switched_off": not kept, "tokens": 12}  # all there is


def test_nothing_is_measured_when_not_asked_or_when_it_never_exits(tiny, monkeypatch):
    monkeypatch.setattr(real_calibration, "measured_time_ratio", lambda *a, **k: pytest.fail("measured"))
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    assert exit_that_pays(tiny, _chunks(1, 6), controller, 0.3, tokens=0) == (0.3, None)
    assert exit_that_pays(tiny, _chunks(1, 6), controller, math.inf, tokens=64) == (math.inf, None)
    entropy = make_controller("entropy", LogitLens(tiny), 0.5)  # exits when the score is low: never is -inf
    assert exit_that_pays(tiny, _chunks(1, 6), entropy, -math.inf, tokens=64) == (-math.inf, None)


@pytest.mark.parametrize("ratio", [0.9, 1.2])
def test_calibration_reports_the_speed_check_and_a_switched_off_exit_is_the_full_model(tiny, monkeypatch, ratio):
    chunks = _chunks(4, 6, seed=4)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    plain = calibrate_by_decoding(tiny, chunks, controller, 0.5, delta=0.2, thresholds=[0.0, 0.2, 2.0])
    assert plain.speed_check is None and not math.isinf(plain.threshold)  # an exiting threshold passes
    monkeypatch.setattr(real_calibration, "measured_time_ratio", lambda *a, **k: ratio)
    began = time.perf_counter()
    cal = calibrate_by_decoding(tiny, chunks, controller, 0.5, delta=0.2, thresholds=[0.0, 0.2, 2.0],
                                speed_check_tokens=16)
    assert 0 < cal.seconds <= time.perf_counter() - began  # the calibration's own time
    assert cal.speed_check == {"threshold": plain.threshold, "time_ratio": ratio, "switched_off": ratio >= 1,
                               "tokens": 16}
    assert controller.threshold == cal.threshold
    if ratio < 1:  # kept: everything as the cost model chose it
        assert (cal.threshold, cal.agreement, cal.lower_bound, cal.cost_fraction) == (
            plain.threshold, plain.agreement, plain.lower_bound, plain.cost_fraction)
    else:  # switched off: no decision is made, so the full model's own tokens, at its own cost
        assert cal.threshold == math.inf and controller.stops_nobody and cal.met
        assert (cal.agreement, cal.lower_bound, cal.cost_fraction, cal.bytes_fraction, cal.mean_layers_fraction) == (
            1.0, 1.0, 1.0, 1.0, 1.0)
    assert cal.summary()["speed_check"] == cal.speed_check


@given(bad=st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3)))
def test_speed_check_tokens_must_be_an_integer_at_least_0(tiny, bad):
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    with pytest.raises((ValueError, TypeError), match="speed_check_tokens"):
        calibrate_by_decoding(tiny, _chunks(1, 4), controller, speed_check_tokens=bad)


def test_evaluate_checks_the_speed_by_default_and_says_what_it_found(tiny, monkeypatch):
    from conftest import CharTokenizer

    monkeypatch.setattr(real_calibration, "measured_time_ratio", lambda *a, **k: 1.04)
    args = (tiny, CharTokenizer(48), "hello world, " * 6, "confidence")
    r = evaluate(*args, calibration_text="calibrate on this text. " * 4, target_agreement=0.5, max_tokens=40,
                 chunk=20, delta=0.3)
    speed = r.calibration["speed_check"]  # the cost model's choice exits; at 1.04x it is switched off
    assert speed["switched_off"] and not math.isinf(speed["threshold"]) and speed["tokens"] == 96  # all there is
    assert math.isinf(r.threshold) and r.agreement == 1.0 and r.cost_fraction == 1.0
    assert "took 1.040x the full model's time" in format_result(r) and "switched off" in format_result(r)
    assert SPEED_CHECK_TOKENS == 128
    off = evaluate(*args, calibration_text="calibrate on this text. " * 4, target_agreement=0.5, max_tokens=40,
                   chunk=20, delta=0.3, speed_check_tokens=0)
    assert off.calibration["speed_check"] is None
