"""The lenses refuse what they cannot read: translators at layers the model lacks, residuals of another width."""

import pytest
import torch
from conftest import random_llama

from anee_lite import UnrolledModel
from anee_lite.lens import TunedLens, lens_from_resid, logit_lens

MODEL = UnrolledModel(random_llama(n_layers=3, d_model=64))
D = MODEL.dims.d_model


@pytest.mark.parametrize("layer", [-1, 3, 99, 1.0, "1", True])
def test_tuned_lens_refuses_layers_the_model_lacks(layer):
    with pytest.raises((ValueError, TypeError), match="tuned lens layer"):
        TunedLens(MODEL, {layer: torch.zeros(D, D)}, {layer: torch.zeros(D)})


def test_tuned_lens_refuses_mismatched_or_non_tensor_translators():
    with pytest.raises(TypeError, match="same layers"):
        TunedLens(MODEL, {1: torch.zeros(D, D)}, {2: torch.zeros(D)})
    with pytest.raises(TypeError, match="weights and biases"):
        TunedLens(MODEL, [torch.zeros(D, D)], [torch.zeros(D)])
    with pytest.raises(TypeError, match="layer 1 must be tensors"):
        TunedLens(MODEL, {1: [[0.0] * D] * D}, {1: torch.zeros(D)})


def test_tuned_lens_at_every_real_layer_is_accepted_and_identity_translators_equal_the_logit_lens():
    layers = list(range(MODEL.dims.n_layers))  # 0 (the embedding) .. n_layers - 1
    lens = TunedLens.identity(MODEL, layers)
    resid = torch.randn(1, 4, D)
    for layer in layers:
        assert torch.equal(lens.logits(layer, resid), MODEL.logits_from_resid(resid))


def test_lens_from_resid_refuses_another_width_and_agrees_with_logit_lens():
    ids = torch.randint(2, 90, (1, 6))
    with pytest.raises(ValueError, match=r"resid_stack must be a tensor \[L, B, T, d_model=64\], got \[4, 1, 6, 5\]"):
        lens_from_resid(MODEL, torch.randn(4, 1, 6, 5))
    with pytest.raises(ValueError, match="resid_stack"):
        lens_from_resid(MODEL, torch.randn(6, D))
    stack = MODEL(ids, return_resid=True).resid_stack()  # [n_layers + 1, 1, T, d]
    assert torch.equal(lens_from_resid(MODEL, stack).top_tokens, logit_lens(MODEL, ids).top_tokens)


def test_a_lens_too_big_for_memory_is_refused_with_the_length_that_fits(monkeypatch):
    from anee_lite.lens import logit as logit_module

    per_token = (MODEL.dims.n_layers + 1) * MODEL.dims.d_vocab
    monkeypatch.setattr(logit_module, "MAX_LENS_VALUES", 10 * per_token)  # room for 10 tokens
    assert logit_lens(MODEL, torch.randint(2, 90, (2, 5))).top_tokens.shape[2] == 5  # 2 x 5 fits
    with pytest.raises(ValueError, match=r"lens over 1 x 11 tokens .* pass at most 10 tokens"):
        logit_lens(MODEL, torch.randint(2, 90, (1, 11)))


def test_the_size_is_checked_before_the_forward(monkeypatch):
    from anee_lite.lens import logit as logit_module

    monkeypatch.setattr(logit_module, "MAX_LENS_VALUES", 1)
    monkeypatch.setattr(UnrolledModel, "forward", lambda *a, **k: pytest.fail("ran the model before checking"))
    with pytest.raises(ValueError, match="pass at most 0 tokens"):
        logit_lens(MODEL, torch.randint(2, 90, (1, 3)))
