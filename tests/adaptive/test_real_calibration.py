"""Calibration on the real decoding path: batched rows equal batch-1 decoding; the guarantee holds on held-out text."""

import pytest
import torch
from conftest import VOCAB, random_llama

from anee_lite import UnrolledModel
from anee_lite.adaptive.calibration import build_replay, replay_scores, text_chunks
from anee_lite.adaptive.controllers import make_controller
from anee_lite.adaptive.evaluate import build_controller, decode_teacher_forced
from anee_lite.adaptive.guarantee import clopper_pearson_lower
from anee_lite.adaptive.real_calibration import (
    calibrate_by_decoding,
    decode_rows,
    measure_thresholds,
    order_safest_first,
)
from anee_lite.io import eval_text
from anee_lite.lens import LogitLens


@pytest.fixture(scope="module")
def tiny():
    return UnrolledModel(random_llama(n_layers=6, seed=3))


def _chunks(n, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(VOCAB, (1, T), generator=g) for _ in range(n)]


def _middle_thresholds(model, chunks, controller, k):
    """k thresholds halfway between neighbouring scores (no float ties), spread over the score range."""
    scores = replay_scores(build_replay(model, chunks), controller)
    s = scores[torch.isfinite(scores)].unique()  # sorted
    at = torch.linspace(0.2 * (len(s) - 2), 0.8 * (len(s) - 2), k).long()
    return ((s[at] + s[at + 1]) / 2).tolist()


@pytest.mark.parametrize("name,kwargs", [("confidence", {}), ("saturation", {}), ("candidate", {"n_candidates": 90})])
def test_each_batch_row_is_exactly_its_own_batch1_decoding(tiny, name, kwargs):
    chunks = _chunks(2, 7)
    controller = make_controller(name, LogitLens(tiny), 0.5, **kwargs)
    thresholds = _middle_thresholds(tiny, chunks, controller, 2)
    got = decode_rows(tiny, torch.cat(chunks), controller, torch.tensor(thresholds))  # [J, R, T] each
    assert controller.threshold == 0.5  # the per-row thresholds are gone afterwards
    seen_exits = set()
    for j, thr in enumerate(thresholds):
        controller.threshold = thr
        for r, ids in enumerate(chunks):
            ref = decode_teacher_forced(tiny, [ids], controller)
            assert got["exits"][j, r].tolist() == ref["exits"].tolist()
            assert got["top1"][j, r].tolist() == ref["logits"].argmax(-1).tolist()
            assert got["checks"][j, r].tolist() == ref["checks"].tolist()
            assert got["extra_lens_checks"][j, r].tolist() == ref["extra_lens_checks"].tolist()
            seen_exits |= set(ref["exits"].tolist())
    assert len(seen_exits) >= 2  # the thresholds really made tokens exit at different depths


def test_measured_cost_and_agreement_follow_the_threshold(tiny):
    chunks = _chunks(4, 6, seed=1) + _chunks(1, 4, seed=2)  # two lengths: grouped separately
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = order_safest_first(controller, _middle_thresholds(tiny, chunks, controller, 4) + [2.0])
    assert thresholds[0] == 2.0  # confidence never reaches 2: the safest candidate exits nothing
    rows = measure_thresholds(tiny, chunks, controller, thresholds, batch_rows=6)
    assert [r["tokens"] for r in rows] == [28] * 5
    assert rows[0]["agreements"] == 28 and rows[0]["mean_layers_fraction"] == 1.0
    costs = [r["cost_fraction"] for r in rows]
    assert costs == sorted(costs, reverse=True) and costs[-1] < costs[0]


def test_calibration_refuses_bad_arguments(tiny):
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    for kwargs, match in [({"target_agreement": 0.0}, "target_agreement"), ({"delta": 1.0}, "delta"),
                          ({"n_candidates": 0}, "n_candidates")]:
        with pytest.raises(ValueError, match=match):
            calibrate_by_decoding(tiny, _chunks(1, 4), controller, **kwargs)
    with pytest.raises(ValueError, match="chunks"):
        calibrate_by_decoding(tiny, [], controller)


def test_calibration_picks_the_cheapest_threshold_whose_bound_reaches_the_target(tiny):
    chunks = _chunks(4, 6, seed=4)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = _middle_thresholds(tiny, chunks, controller, 3) + [2.0]
    cal = calibrate_by_decoding(tiny, chunks, controller, 0.5, delta=0.2, thresholds=thresholds)
    assert controller.threshold == cal.threshold and cal.tokens == 24 and cal.met
    assert [t.threshold for t in cal.tested] == order_safest_first(controller, thresholds)
    passed = [t for t in cal.tested if t.passed]
    assert cal.threshold == min(passed, key=lambda t: t.cost_fraction).threshold
    assert cal.lower_bound == pytest.approx(clopper_pearson_lower(round(cal.agreement * 24), 24, 0.2))
    assert cal.lower_bound >= 0.5
    first_fail = next((t for t in cal.tested if not t.passed), None)
    assert first_fail is None or first_fail.lower_bound < 0.5


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not kept yet: 0.707 delivered for 0.80 (bound 0.8+ on calibration); the "
                   "shipped probe and tuned lens were trained on the calibration text itself (see README)")
def test_calibrated_threshold_keeps_its_promise_on_held_out_text(smollm2_hf):
    """On SmolLM2 and the shipped texts: calibrated on one split, the target holds on the other (within 0.03)."""
    hf, tok = smollm2_hf
    model = UnrolledModel(hf)
    controller = build_controller(model, "smollm2-135m", "learned")
    cal = text_chunks(tok, eval_text("python_docs_calibration"), max_tokens=256, chunk=32)
    held = text_chunks(tok, eval_text("python_docs_heldout"), max_tokens=256, chunk=32)
    result = calibrate_by_decoding(model, cal, controller, 0.8, delta=0.1, n_candidates=5)
    assert result.met and result.lower_bound >= 0.8
    (got,) = measure_thresholds(model, held, controller, [result.threshold])
    assert got["agreements"] / got["tokens"] >= 0.8 - 0.03
