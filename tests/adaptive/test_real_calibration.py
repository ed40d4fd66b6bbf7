"""Calibration on the real decoding path: batched rows equal batch-1 decoding; the guarantee holds on held-out text."""

import pytest
import torch
from conftest import VOCAB, random_llama
from hypothesis import given
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.adaptive.calibration import build_replay, replay_scores, text_chunks
from anee_lite.adaptive.controllers import make_controller
from anee_lite.adaptive.evaluate import build_controller, decode_teacher_forced
from anee_lite.adaptive.guarantee import CandidateThreshold, clopper_pearson_lower, fixed_sequence_select
from anee_lite.adaptive.real_calibration import (
    agreement_by_exit_history,
    calibrate_by_decoding,
    cheapest_by,
    decode_rows,
    decode_thresholds,
    measure_thresholds,
    order_safest_first,
    summarize,
)
from anee_lite.core.cache import CONTROLLER_KV_FILL
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
    chosen = next(t for t in cal.tested if t.threshold == cal.threshold)
    assert chosen.chunk_tokens == [6] * 4 and sum(chosen.chunk_agreements) == round(cal.agreement * 24)
    n = max(1, round(cal.effective_tokens))  # the chunks' spread says what the 24 tokens are worth
    assert 1 <= cal.effective_tokens <= 24
    assert cal.lower_bound == pytest.approx(clopper_pearson_lower(min(n, round(cal.agreement * n)), n, 0.2))
    assert cal.lower_bound >= 0.5
    first_fail = next((t for t in cal.tested if not t.passed), None)
    assert first_fail is None or first_fail.lower_bound < 0.5


def test_calibration_stops_decoding_after_the_first_failure_and_chooses_the_same(tiny):
    """One candidate per round (batch_rows = the number of chunks): the walk decodes up to its first failure only."""
    chunks = _chunks(4, 6, seed=4)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = order_safest_first(controller, _middle_thresholds(tiny, chunks, controller, 5) + [2.0])
    everything = calibrate_by_decoding(tiny, chunks, controller, 0.7, delta=0.2, thresholds=thresholds, batch_rows=64)
    walked = calibrate_by_decoding(tiny, chunks, controller, 0.7, delta=0.2, thresholds=thresholds, batch_rows=4)
    first_fail = next(i for i, t in enumerate(everything.tested) if not t.passed)  # the safest (2.0) always passes
    assert len(everything.tested) == len(thresholds) and first_fail < len(thresholds) - 1  # a real cut below
    assert [t.threshold for t in walked.tested] == thresholds[:first_fail + 1]
    assert [(t.agreements, t.cost_fraction, t.passed) for t in walked.tested] == \
        [(t.agreements, t.cost_fraction, t.passed) for t in everything.tested[:first_fail + 1]]
    assert (walked.threshold, walked.lower_bound, walked.met) == (everything.threshold, everything.lower_bound,
                                                                   everything.met)


# Thresholds on the learned probe's P(readout is final), fixed before any text is seen (Learn-then-Test).
FIXED_GRID = [0.99, 0.97, 0.95, 0.93, 0.9, 0.85, 0.8]


@pytest.mark.slow
def test_the_guarantee_holds_over_random_calibration_samples(smollm2_hf):
    """Calibrate on random samples of the shipped Python-docs chunks, many times; check each choice's true agreement.

    Every chunk (calibration and held-out pages, 64 tokens each) is decoded once under every threshold
    of a grid fixed in advance (real path, batched rows); a sample then only re-counts. The pool of
    chunks stands for "text like the calibration text": each calibration sample draws half as many
    chunks with replacement, and the threshold it picks delivers the pool's agreement. The promise
    "agreement >= target with probability >= 1 - delta" must fail on about delta of the samples or
    fewer, while exit still happens on most. (Splitting the pool in two halves instead would make the
    halves' agreements move in opposite directions: a threshold chosen because its calibration half
    agreed well would then be judged on the half that agreed badly.)
    """
    hf, tok = smollm2_hf
    model = UnrolledModel(hf)
    controller = build_controller(model, "smollm2-135m", "learned")
    chunks = [c for name in ("python_docs_calibration", "python_docs_heldout")
              for c in text_chunks(tok, eval_text(name), max_tokens=1536, chunk=64)]
    grid = order_safest_first(controller, FIXED_GRID)
    runs = decode_thresholds(model, chunks, controller, grid, batch_rows=256)  # the default fill: catch-up
    right = torch.tensor([[int((runs[t][c]["top1"] == runs[t][c]["final"]).sum()) for c in range(len(chunks))]
                          for t in grid])  # [J, C] tokens that agree, per threshold and chunk
    truth = right.sum(1) / sum(c.shape[1] for c in chunks)  # [J] each threshold's agreement on the pool
    gen = torch.Generator().manual_seed(0)
    delta, n_samples = 0.1, 200
    for target in (0.8, 0.9):
        misses = exits = 0
        for _ in range(n_samples):
            cal = torch.randint(len(chunks), (len(chunks) // 2,), generator=gen).tolist()
            tested = [CandidateThreshold(lower_bound=0.0, **m) for m in summarize(model, controller, runs, chunks, cal)]
            best = fixed_sequence_select(tested, target, delta, cheapest_by=cheapest_by(CONTROLLER_KV_FILL))
            if best is None:
                continue
            j = grid.index(best.threshold)
            misses += bool(truth[j] < target)
            exits += j > 0 and truth[j] < 1.0
        assert misses / n_samples <= delta, f"target {target}: missed on {misses} of {n_samples} samples"
        assert exits > n_samples // 2, f"target {target}: a threshold that exits was chosen on only {exits} samples"


def test_agreement_by_exit_history_by_hand():
    """Chunk of 5 on a 6-layer model: tokens 1 and 4 exit; 2 and 3 run every layer after an exit."""
    t = torch.tensor
    runs = {0.5: {0: {"top1": t([1, 2, 3, 4, 5]), "final": t([1, 2, 0, 4, 0]), "exits": t([6, 3, 6, 6, 2])},
                  1: {"top1": t([7, 8]), "final": t([7, 9]), "exits": t([6, 6])}}}
    got = agreement_by_exit_history(runs, 6)[0.5]
    assert got == {"exited": {"tokens": 2, "agreements": 1},
                   "full_depth_clean": {"tokens": 3, "agreements": 2},
                   "full_depth_after_exit": {"tokens": 2, "agreements": 1}}


def test_agreement_by_exit_history_partitions_real_decoding(tiny):
    """On real decodings the three groups hold every token and every agreement that summarize counts;
    a threshold that never exits leaves every token clean and in agreement with the full model."""
    chunks = _chunks(3, 8, seed=5)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = [2.0, *_middle_thresholds(tiny, chunks, controller, 3)]
    runs = decode_thresholds(tiny, chunks, controller, thresholds)
    split = agreement_by_exit_history(runs, tiny.dims.n_layers)
    for row in summarize(tiny, controller, runs, chunks):
        groups = split[row["threshold"]]
        assert sum(g["tokens"] for g in groups.values()) == row["tokens"]
        assert sum(g["agreements"] for g in groups.values()) == row["agreements"]
    assert split[2.0] == {"exited": {"tokens": 0, "agreements": 0},
                          "full_depth_clean": {"tokens": 24, "agreements": 24},
                          "full_depth_after_exit": {"tokens": 0, "agreements": 0}}
    assert any(split[t]["exited"]["tokens"] > 0 for t in thresholds[1:])


@given(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3)))
def test_agreement_by_exit_history_refuses_a_bad_depth(n_layers):
    with pytest.raises((TypeError, ValueError), match="n_layers"):
        agreement_by_exit_history({}, n_layers)


@pytest.mark.parametrize("runs", [[], {0.5: [1]}, "runs"])
def test_agreement_by_exit_history_refuses_what_decode_thresholds_did_not_return(runs):
    with pytest.raises(TypeError, match="decode_thresholds"):
        agreement_by_exit_history(runs, 6)


# --- kv_fill="catch_up": exited tokens' skipped layers run later, beside the next token ------------------------


def test_under_catch_up_every_full_depth_token_agrees_and_batch_rows_equal_batch1(tiny):
    """Only the exiting tokens can disagree; each batch row is still exactly its own batch-1 decoding."""
    chunks = _chunks(3, 8, seed=5)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = _middle_thresholds(tiny, chunks, controller, 3)
    runs = decode_thresholds(tiny, chunks, controller, thresholds, kv_fill="catch_up")
    split = agreement_by_exit_history(runs, tiny.dims.n_layers)
    after = [split[t]["full_depth_after_exit"] for t in thresholds]
    assert sum(g["tokens"] for g in after) > 0  # the check below is not vacuous
    assert all(g["agreements"] == g["tokens"] for g in after)
    propagated = agreement_by_exit_history(decode_thresholds(tiny, chunks, controller, thresholds, kv_fill="propagate"),
                                           tiny.dims.n_layers)
    assert any(propagated[t]["full_depth_after_exit"]["agreements"] < propagated[t]["full_depth_after_exit"]["tokens"]
               for t in thresholds)  # on this model propagation does lose some: the comparison has teeth
    controller.threshold = thresholds[1]
    for c, ids in enumerate(chunks):
        ref = decode_teacher_forced(tiny, [ids], controller, kv_fill="catch_up")
        assert runs[thresholds[1]][c]["exits"].tolist() == ref["exits"].tolist()
        assert runs[thresholds[1]][c]["top1"].tolist() == ref["logits"].argmax(-1).tolist()


def test_catch_up_costs_at_least_the_full_models_layers_and_calibrates(tiny):
    """Catch-up saves no FLOPs: every layer a later token reaches is run for the exited tokens too."""
    chunks = _chunks(4, 6, seed=1)
    controller = make_controller("confidence", LogitLens(tiny), 0.5)
    thresholds = _middle_thresholds(tiny, chunks, controller, 3)
    caught = measure_thresholds(tiny, chunks, controller, thresholds, kv_fill="catch_up")
    propagated = measure_thresholds(tiny, chunks, controller, thresholds, kv_fill="propagate")
    for c, p in zip(caught, propagated):
        assert c["cost_fraction"] > p["cost_fraction"]
    cal = calibrate_by_decoding(tiny, chunks, controller, 0.5, delta=0.2, thresholds=thresholds + [2.0],
                                kv_fill="catch_up")
    assert cal.threshold in caught_thresholds(caught) + [2.0] and cal.kv_fill == "catch_up"
    passed = [t for t in cal.tested if t.passed]
    assert cal.bytes_fraction == min(t.bytes_fraction for t in passed)  # cheapest by memory traffic, not FLOPs
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        calibrate_by_decoding(tiny, chunks, controller, 0.5, thresholds=[2.0], kv_fill="eager")


def caught_thresholds(rows):
    return [r["threshold"] for r in rows]
