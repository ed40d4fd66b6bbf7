"""The candidate-set confidence check: never exits where the exact rule would not, same as it on the full set."""

import pytest
import torch
from conftest import VOCAB, random_llama

from anee_lite import UnrolledModel
from anee_lite.adaptive.controllers import make_controller
from anee_lite.adaptive.controllers.candidate import CandidateConfidenceExit, candidates_from_counts
from anee_lite.adaptive.evaluate import decode_teacher_forced
from anee_lite.lens import LogitLens


@pytest.fixture(scope="module")
def tiny():
    return UnrolledModel(random_llama(n_layers=4, seed=5))


def _quantiles(lens, resid, qs):
    """Thresholds at quantiles of the exact top-1 probability, nudged off the sampled values."""
    with torch.no_grad():
        p = lens.logits(2, resid).softmax(-1).max(-1).values.flatten()
    return [float(torch.quantile(p, q)) + 1e-7 for q in qs]


def _decide(controller, resid):
    controller.reset()
    active = torch.ones(resid.shape[:2], dtype=torch.bool)
    return controller(2, resid, active)


def test_full_candidate_set_decides_exactly_like_confidence(tiny):
    resid = 3 * torch.randn(2, 50, tiny.dims.d_model, generator=torch.Generator().manual_seed(0))
    lens = LogitLens(tiny)
    for thr in _quantiles(lens, resid, (0.2, 0.5, 0.8)):
        exact = _decide(make_controller("confidence", lens, thr), resid)
        cheap = _decide(CandidateConfidenceExit(thr, lens, n_candidates=VOCAB), resid)
        assert torch.equal(cheap, exact)
        assert 0 < int(exact.sum()) < exact.numel()  # the thresholds split the tokens


def test_subset_screen_only_exits_where_confidence_exits_and_costs_what_it_says(tiny):
    resid = 3 * torch.randn(2, 50, tiny.dims.d_model, generator=torch.Generator().manual_seed(1))
    lens = LogitLens(tiny)
    (thr,) = _quantiles(lens, resid, (0.3,))
    exact = _decide(make_controller("confidence", lens, thr), resid)
    c = CandidateConfidenceExit(thr, lens, n_candidates=20)
    cheap = _decide(c, resid)
    assert not bool((cheap & ~exact).any())  # every exit passed the exact rule
    top_in_set = lens.logits(2, resid).argmax(-1) < 20  # [2, 50]
    assert torch.equal(cheap[top_in_set], exact[top_in_set])  # the screen is exact when the top-1 is a candidate
    assert c.checks.unique().tolist() == [1]  # one screen per token
    assert c.probe_macs_per_check == (20 + 2) * tiny.dims.d_model  # k dot products + the final norm
    assert 0 < int(cheap.sum())
    screened_in = c.score(2, resid) >= thr
    assert torch.equal(c.extra_lens_checks.bool(), screened_in & ~cheap)  # confirmed by a full lens, not stopped


def test_decoding_charges_one_screen_and_one_confirmation_per_check(tiny):
    ids = torch.randint(VOCAB, (1, 8), generator=torch.Generator().manual_seed(2))
    c = CandidateConfidenceExit(0.0, LogitLens(tiny), n_candidates=30, sink_tokens=0)  # the first token may stop too
    run = decode_teacher_forced(tiny, [ids], c)
    assert run["exits"].tolist() == [1] * 8  # threshold 0: the screen and the confirmation pass at once
    assert run["checks"].tolist() == [1] * 8 and run["extra_lens_checks"].tolist() == [0] * 8
    charged = c.charges(1)
    assert charged["lens_checks"] == 1 and not charged["unembed"]  # the confirmation's logits are the output
    assert charged["probe_checks"] == 1 and charged["probe_macs_per_check"] == 32 * tiny.dims.d_model


def test_candidates_from_counts_takes_the_most_frequent_ids():
    ids = torch.tensor([5, 5, 5, 2, 2, 9])
    assert candidates_from_counts(ids, d_vocab=12, k=2).tolist() == [2, 5]
    assert candidates_from_counts(ids, d_vocab=12, k=4).tolist() == [0, 2, 5, 9]  # topped up with id 0


def test_bad_candidates_are_refused(tiny):
    with pytest.raises(ValueError, match="candidates"):
        CandidateConfidenceExit(0.5, LogitLens(tiny), candidates=torch.tensor([VOCAB]))
    with pytest.raises(ValueError, match="n_candidates"):
        CandidateConfidenceExit(0.5, LogitLens(tiny), n_candidates=0)
