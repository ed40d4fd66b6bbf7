"""Ablation and activation patching against weight surgery and hooks on HuggingFace copies, and by hand."""

import copy

import pytest
import torch
from conftest import VOCAB, hf_blocks, random_gpt2, random_ids, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.interventions import (
    ablate_heads,
    ablate_layers,
    ablate_neurons,
    logit_difference,
    mean_activations,
    patch,
    patching,
    patching_sweep,
    record,
)
from anee_lite.interventions.patching import RESID_POINTS

MODELS = {"gpt2": lambda: random_gpt2(n_layer=3), "llama-gqa": lambda: random_llama(n_layers=3)}
TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(MODELS))
def hf(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def model(hf):
    return UnrolledModel(hf)


def without_block(hf, layer):
    """Weight surgery: an HF copy with block ``layer`` removed."""
    cut = copy.deepcopy(hf)
    kept = torch.nn.ModuleList([b for i, b in enumerate(hf_blocks(cut)) if i != layer])
    if hf.config.model_type == "gpt2":
        cut.transformer.h = kept
        cut.config.n_layer -= 1
    else:
        for i, b in enumerate(kept):
            b.self_attn.layer_idx = i
        cut.model.layers = kept
        cut.config.num_hidden_layers -= 1
    return cut


def test_zero_ablating_a_layer_equals_removing_its_block(hf, model):
    ids = random_ids()
    ablated = model(ids, hooks=ablate_layers(model, [1])).logits
    with torch.no_grad():
        surgery = without_block(hf, 1)(ids, use_cache=False).logits
    assert (ablated - surgery).abs().max() <= TOL
    assert (ablated - model(ids, skip_layers=[1]).logits).abs().max() <= TOL


def test_zero_ablating_heads_and_neurons_equals_the_masks(model):
    ids = random_ids()
    d = model.dims
    head_mask = torch.ones(d.n_layers, d.n_heads)
    head_mask[0, [1, 3]] = 0
    head_mask[2, 0] = 0
    hooks = ablate_heads(model, {0: [3, 1], 2: [0]})
    assert (model(ids, hooks=hooks).logits - model(ids, head_mask=head_mask).logits).abs().max() <= TOL
    mlp_mask = torch.ones(d.n_layers, d.d_mlp)
    mlp_mask[1, :5] = 0
    hooks = ablate_neurons(model, {1: range(5)})
    assert (model(ids, hooks=hooks).logits - model(ids, mlp_mask=mlp_mask).logits).abs().max() <= TOL


def test_mean_ablation_with_the_means_of_the_same_single_token_changes_nothing(model):
    """The mean over one token is that token's own activation, so replacing it by the mean is the identity."""
    ids = random_ids(batch=1, tokens=1, seed=2)
    names = [f"blocks.{l}.{p}" for l in range(model.dims.n_layers) for p in ("attn.hook_z", "mlp.hook_post")]
    means = mean_activations(model, ids, names)
    plain = model(ids).logits
    for hooks in (ablate_layers(model, [0, 2], means), ablate_heads(model, {1: [0, 2]}, means),
                  ablate_neurons(model, {0: [1, 4]}, means)):
        assert (model(ids, hooks=hooks).logits - plain).abs().max() <= TOL
    longer = random_ids(batch=2, tokens=6, seed=3)
    other = mean_activations(model, longer, names)
    assert (model(longer, hooks=ablate_layers(model, [1], other)).logits
            - model(longer, hooks=ablate_layers(model, [1])).logits).abs().max() > 1e-3  # mean != zero


def test_mean_activations_skip_padding(model):
    ids = random_ids(batch=2, tokens=5, seed=4)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    name = "blocks.1.mlp.hook_post"
    acts = record(model, ids, [name], attention_mask=mask)[name]  # [B, T, d_mlp]
    by_hand = torch.cat([acts[0, 2:], acts[1]]).mean(0)
    assert (mean_activations(model, ids, [name], attention_mask=mask)[name] - by_hand).abs().max() <= 1e-6


def test_record_returns_what_the_forward_used(model):
    ids = random_ids()
    name = "blocks.2.hook_resid_post"
    out = model(ids, return_resid=True)
    got = record(model, ids, [name, "blocks.0.attn.hook_z"])
    assert torch.equal(got[name], out.activations[name])
    assert got["blocks.0.attn.hook_z"].shape == (2, 7, model.dims.n_heads, model.dims.d_head)
    assert set(record(model, ids, [name, "blocks.0.hook_resid_pre"], exit_layers=1)) == {"blocks.0.hook_resid_pre"}


def test_patching_every_position_of_the_first_residual_gives_the_clean_run(model):
    clean, corrupted = random_ids(1, 6, seed=5), random_ids(1, 6, seed=6)
    patched = patch(model, clean, corrupted, "blocks.0.hook_resid_pre").logits
    assert (patched - model(clean).logits).abs().max() == 0
    same = corrupted.clone()
    same[0, 2] = clean[0, 2] + 1 if clean[0, 2] + 1 < VOCAB else 0  # differs from clean at position 2 only ...
    same[0, :2], same[0, 3:] = clean[0, :2], clean[0, 3:]
    untouched = patch(model, clean, same, "blocks.0.hook_resid_pre", positions=[0, 1, 3]).logits
    assert (untouched - model(same).logits).abs().max() == 0  # ... so pasting equal positions changes nothing


def test_patching_matches_a_huggingface_forward_pre_hook(hf, model):
    clean, corrupted = random_ids(1, 6, seed=7), random_ids(1, 6, seed=8)
    layer, position = 2, 3
    with torch.no_grad():
        clean_hidden = hf(clean, output_hidden_states=True, use_cache=False).hidden_states[layer]  # [1, T, d_model]

    def paste(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, position] = clean_hidden[:, position]
        return ((hidden,) + args[1:], kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

    handle = hf_blocks(hf)[layer].register_forward_pre_hook(paste, with_kwargs=True)
    try:
        with torch.no_grad():
            theirs = hf(corrupted, use_cache=False).logits
    finally:
        handle.remove()
    ours = patch(model, clean, corrupted, f"blocks.{layer}.hook_resid_pre", positions=[position]).logits
    assert (ours - theirs).abs().max() <= TOL


def test_logit_difference_by_hand():
    logits = torch.zeros(2, 3, 5)
    logits[0, -1, 4], logits[0, -1, 1] = 2.5, -1.0
    logits[1, 0, 4] = 7.0
    assert logit_difference(logits, 4, 1).tolist() == [3.5, 0.0]
    assert logit_difference(logits, 4, 1, position=0).tolist() == [0.0, 7.0]


def test_the_patching_sweep_restores_all_at_the_changed_token_and_nothing_elsewhere_in_layer_0(model):
    """At layer 0 the residual is the embedding: only the position whose token differs carries the change."""
    clean = random_ids(1, 5, seed=9)
    corrupted = clean.clone()
    corrupted[0, 1] = (clean[0, 1] + 7) % VOCAB
    logits = model(clean).logits
    correct = int(logits[0, -1].argmax())
    wrong = int(model(corrupted).logits[0, -1].argmax())
    if correct == wrong:
        wrong = int(logits[0, -1].argsort()[-2])
    sweep = patching_sweep(model, clean, corrupted, correct, wrong, progress=False)
    assert sweep.shape == (model.dims.n_layers, 5)
    assert torch.allclose(sweep[0], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]), atol=1e-4)
    assert torch.allclose(sweep[:, 0], torch.zeros(model.dims.n_layers), atol=1e-4)  # position 0 sees no change
    after = patching_sweep(model, clean, corrupted, correct, wrong, point="hook_resid_post", progress=False)
    assert abs(float(after[-1, -1]) - 1.0) <= 1e-4  # the last block's output at the last position is the answer
    assert torch.allclose(after[-1, :-1], torch.zeros(4), atol=1e-4)  # no later block reads the others


@settings(max_examples=30, deadline=None)
@given(layer=st.integers(-3, 6), head=st.integers(-3, 6))
def test_ablation_indices_outside_the_model_are_refused(llama4, layer, head):
    d = llama4.dims
    if 0 <= layer < d.n_layers and 0 <= head < d.n_heads:
        assert f"blocks.{layer}.attn.hook_z" in ablate_heads(llama4, {layer: [head]})
        return
    with pytest.raises(ValueError, match="heads"):
        ablate_heads(llama4, {layer: [head]})


@pytest.mark.parametrize("call,error,match", [
    (lambda m: ablate_heads(m, [0, 1]), TypeError, "heads must be a non-empty dict"),
    (lambda m: ablate_heads(m, {0: 1}), TypeError, "list of head indices"),
    (lambda m: ablate_heads(m, {0: []}), ValueError, "name at least one head"),
    (lambda m: ablate_neurons(m, {0: [10_000]}), ValueError, "neurons"),
    (lambda m: ablate_layers(m, 1), TypeError, "layers must be"),
    (lambda m: ablate_layers(m, []), ValueError, "at least one layer"),
    (lambda m: ablate_layers(m, [1, 1]), ValueError, "must not repeat"),
    (lambda m: ablate_layers(m, [0], means={}), ValueError, "means must hold 'blocks.0.attn.hook_z'"),
    (lambda m: ablate_heads(m.arch, {0: [0]}), TypeError, "UnrolledModel"),
    (lambda m: mean_activations(m, random_ids(), ["blocks.0.attn.hook_pattern"]), ValueError, "hook_z"),
    (lambda m: record(m, random_ids(), ["blocks.9.hook_resid_pre"]), ValueError, "valid names"),
    (lambda m: record(m, random_ids(), []), TypeError, "non-empty list"),
    (lambda m: patch(m, random_ids(1, 5), random_ids(1, 6), "blocks.0.hook_resid_pre"), ValueError, "same shape"),
    (lambda m: patch(m, random_ids(1, 5), random_ids(1, 5), ["blocks.0.hook_resid_pre"]), TypeError, "one hook name"),
    (lambda m: patching_sweep(m, random_ids(2, 5), random_ids(2, 5), 1, 2), ValueError, r"shape \[1, T\]"),
    (lambda m: patching_sweep(m, random_ids(1, 5), random_ids(1, 5), 1, 2, point="attn.hook_z"), ValueError, "point"),
    (lambda m: patching_sweep(m, random_ids(1, 5), random_ids(1, 5), 1, 2), ValueError, "same logit difference"),
    (lambda m: logit_difference(torch.zeros(2, 5), 1, 2), TypeError, "logits"),
    (lambda m: logit_difference(torch.zeros(1, 2, 5), 5, 2), ValueError, "correct"),
])
def test_bad_arguments_name_the_parameter(llama4, call, error, match):
    with pytest.raises(error, match=match):
        call(llama4)


def test_a_mean_of_another_model_is_refused(llama4):
    narrow = UnrolledModel(random_llama(n_layers=1, d_model=32))
    means = mean_activations(narrow, random_ids(1, 3), ["blocks.0.mlp.hook_post"])
    with pytest.raises(ValueError, match="compute it on this model"):
        llama4(random_ids(1, 3), hooks=ablate_neurons(llama4, {0: [0]}, means))


def test_the_wrapper_passes_hooks_to_the_forward(tiny_gpt2_folder):
    from anee_lite import ANEEConfig, ANEEWrapper

    wrapper = ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)))
    ids = torch.tensor([wrapper.tokenizer("The quick brown fox")["input_ids"]])
    hooks = ablate_layers(wrapper.model, [0])
    assert (wrapper(ids, energy_budget=1.0, hooks=hooks).logits
            - wrapper(ids, energy_budget=1.0, skip_layers=[0]).logits).abs().max() <= TOL


@pytest.mark.parametrize("point", RESID_POINTS)
def test_the_patching_sweep_equals_one_patch_per_layer_and_position(model, point, monkeypatch):
    """The sweep's batched rows give the numbers of patch(), run one (layer, position) at a time; also when the
    memory cap splits a layer's patches into several forwards."""
    clean, corrupted = random_ids(1, 6, seed=3), random_ids(1, 6, seed=4)
    correct, wrong = 5, 11
    ld = {name: float(logit_difference(model(ids).logits, correct, wrong)[0])
          for name, ids in (("clean", clean), ("corrupted", corrupted))}
    expected = torch.tensor([[(float(logit_difference(patch(model, clean, corrupted, f"blocks.{l}.{point}", [t]).logits,
                                                      correct, wrong)[0]) - ld["corrupted"]) / (ld["clean"] - ld["corrupted"])
                              for t in range(6)] for l in range(model.dims.n_layers)])
    assert torch.allclose(patching_sweep(model, clean, corrupted, correct, wrong, point, progress=False), expected,
                          atol=1e-4)
    monkeypatch.setattr(patching, "LOGITS_PER_FORWARD", 4 * 6 * model.dims.d_vocab)  # 4 rows, then 2
    assert torch.allclose(patching_sweep(model, clean, corrupted, correct, wrong, point, progress=False), expected,
                          atol=1e-4)
