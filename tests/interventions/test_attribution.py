"""Direct logit attribution: the lens read-out against the model's own logits, each head's direct effect
against the residual it writes (one-head models) and against ablating a last-layer head."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_ids, random_llama

from anee_lite import UnrolledModel
from anee_lite.interventions import ablate_heads, ablation_curve, head_direct_effects, heads_in_order, record


def _perturbed_final_norm(hf):
    with torch.no_grad():  # random init leaves the final norm at scale 1, shift 0: make both matter
        for name, p in hf.named_parameters():
            if name.startswith(("transformer.ln_f", "model.norm")):
                p.add_(0.2 * torch.randn_like(p))
    return hf


MODELS = {
    "gpt2": lambda heads: _perturbed_final_norm(random_gpt2(n_layer=3, n_head=heads)),
    "llama": lambda heads: _perturbed_final_norm(random_llama(n_layers=3, n_heads=heads, n_kv_heads=1)),
}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_readout_gives_the_models_own_logits(arch):
    model = UnrolledModel(MODELS[arch](4))
    ids = random_ids(2, 9)
    out = model(ids, return_resid=True)
    final = out.activations[f"blocks.{model.dims.n_layers - 1}.hook_resid_post"]  # [B, T, d]
    targets = torch.randint(0, VOCAB, ids.shape, generator=torch.Generator().manual_seed(3))
    readout = model.arch.lens_readout(final, targets)  # [B, T, d]
    logit = (final * readout).sum(-1)  # [B, T]
    b = model.arch.ln_final_b
    if b is not None:  # LayerNorm's shift adds a constant per token
        logit = logit + (b @ model.arch.W_U)[targets]
    torch.testing.assert_close(logit, out.logits.gather(-1, targets[..., None])[..., 0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_a_single_heads_effect_is_what_attention_adds_read_by_the_lens(arch):
    model = UnrolledModel(MODELS[arch](1))  # one head: its output is the whole attention output less b_O
    ids = random_ids(2, 8, seed=5)
    effects = head_direct_effects(model, ids)
    assert effects.shape == (model.dims.n_layers, 1)
    L = model.dims.n_layers
    acts = model(ids, return_resid=True)
    final = acts.activations[f"blocks.{L - 1}.hook_resid_post"]
    readout = model.arch.lens_readout(final, acts.logits.argmax(-1))
    for l in range(L):
        added = acts.activations[f"blocks.{l}.hook_resid_mid"] - acts.activations[f"blocks.{l}.hook_resid_pre"]
        b_O = model.arch.blocks[l].b_O
        head = added - (b_O if b_O is not None else 0)  # [B, T, d]
        expected = (head * readout).sum(-1).abs().mean()
        torch.testing.assert_close(effects[l, 0], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_a_last_layer_heads_effect_is_the_change_its_ablation_makes_to_the_read_logit(arch):
    model = UnrolledModel(MODELS[arch](4))
    ids = random_ids(1, 10, seed=7)
    L = model.dims.n_layers
    name = f"blocks.{L - 1}.hook_resid_mid"  # after attention, before the MLP that would react to the ablation
    full = model(ids, return_resid=True)
    targets = full.logits.argmax(-1)
    readout = model.arch.lens_readout(full.activations[f"blocks.{L - 1}.hook_resid_post"], targets)
    effects = head_direct_effects(model, ids)
    for h in range(model.dims.n_heads):  # nothing reads resid_mid's change before it: it is exactly the head's vector
        ablated = record(model, ids, [name], hooks=ablate_heads(model, {L - 1: [h]}))[name]
        change = ((full.activations[name] - ablated) * readout).sum(-1).abs().mean()
        torch.testing.assert_close(effects[L - 1, h], change, atol=1e-5, rtol=1e-4)


def test_given_targets_are_read_and_bad_ones_refused():
    model = UnrolledModel(MODELS["gpt2"](4))
    ids = random_ids(1, 6)
    predicted = head_direct_effects(model, ids)
    other = head_direct_effects(model, ids, targets=(ids + 1) % VOCAB)
    assert torch.equal(predicted, head_direct_effects(model, ids, targets=model(ids).logits.argmax(-1)))
    assert not torch.allclose(predicted, other)
    with pytest.raises(ValueError, match="targets must be token ids shaped like input_ids"):
        head_direct_effects(model, ids, targets=ids[:, :-1])
    with pytest.raises(ValueError, match="input_ids must be token ids"):
        head_direct_effects(model, ids, targets=ids + VOCAB)
    with pytest.raises(TypeError, match="UnrolledModel"):
        head_direct_effects(object(), ids)


def test_heads_in_order_reads_flat_indices_as_layer_and_head():
    order = torch.tensor([5, 0, 7, 2])  # n_heads = 3: 5 -> (1, 2), 0 -> (0, 0), 7 -> (2, 1), 2 -> (0, 2)
    assert heads_in_order(order, 3, 3) == {1: [2], 0: [0], 2: [1]}
    assert heads_in_order(order, 3, 4) == {1: [2], 0: [0, 2], 2: [1]}
    assert heads_in_order(order, 3, 0) == {}
    with pytest.raises(ValueError, match=r"k must be in \[0, 4\]"):
        heads_in_order(order, 3, 5)
    with pytest.raises(TypeError, match="order must be a 1-d tensor"):
        heads_in_order(order.float(), 3, 1)


def test_the_ablation_curve_equals_masking_the_same_heads():
    model = UnrolledModel(MODELS["llama"](4))
    ids = random_ids(2, 12, seed=2)
    order = torch.randperm(model.dims.n_layers * model.dims.n_heads, generator=torch.Generator().manual_seed(0))
    counts = [0, 1, 5, 12]
    curve = ablation_curve(model, ids, order, counts)
    full = model(ids).logits.argmax(-1)
    for k, agreement in zip(counts, curve):
        mask = torch.ones(model.dims.n_layers, model.dims.n_heads)
        for i in order[:k].tolist():
            mask[i // model.dims.n_heads, i % model.dims.n_heads] = 0  # the forward's own head_mask: another path
        expected = (model(ids, head_mask=mask).logits.argmax(-1) == full).float().mean()
        assert agreement == pytest.approx(float(expected))
    assert curve[0] == 1.0 and curve[-1] < 1.0
    with pytest.raises(ValueError, match="order must rank all 12 heads"):
        ablation_curve(model, ids, order[:-1], counts)
