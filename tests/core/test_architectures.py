"""The converters: one weight vocabulary for every architecture, and the caller's HF model left alone."""

import dataclasses

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from transformers import AutoModelForCausalLM

from anee_lite import UnrolledModel
from anee_lite.core.architectures import LayerWeights

MODELS = {
    "gpt2": lambda: random_gpt2(),
    "gpt2-untied": lambda: _untied(random_gpt2(seed=1)),
    "llama-gqa": lambda: random_llama(),
    "llama-bias-untied": lambda: random_llama(n_layers=2, seed=2, attention_bias=True, mlp_bias=True,
                                              tie_word_embeddings=False),
}
IDS = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))


def _untied(hf):
    hf.lm_head.weight = torch.nn.Parameter(hf.lm_head.weight.detach().clone() + 0.01)
    hf.config.tie_word_embeddings = False
    return hf


@pytest.fixture(params=sorted(MODELS))
def hf_model(request):
    return MODELS[request.param]()


def hf_logits(hf, ids=IDS):
    with torch.no_grad():
        return hf(ids).logits.float()


def snapshot(hf):
    """Everything about the HF model's parameters a caller could notice."""
    return {name: (p, p.data_ptr(), p.stride(), p.requires_grad, p.dtype, p.detach().clone())
            for name, p in hf.named_parameters(remove_duplicate=False)}


def matrices(model):
    """The wrapper's weight matrices (fused per layer, plus the embeddings)."""
    arch = model.arch
    per_layer = [getattr(b, n) for b in arch.blocks for n in ("W_QKV", "W_O", "W_mlp_in", "W_out")]
    return per_layer + [arch.W_U, arch.W_E]


def storages(hf):
    return {p.untyped_storage().data_ptr() for p in hf.parameters()}


# --- the caller's model is never modified (default) --------------------------------------------------------------


def test_wrapping_leaves_the_callers_parameters_as_they_were(hf_model):
    next(hf_model.parameters()).requires_grad_(False)  # a mix of flags must survive
    before = snapshot(hf_model)
    UnrolledModel(hf_model)
    after = snapshot(hf_model)
    assert after.keys() == before.keys()
    for name, (param, ptr, stride, grad, dtype, values) in before.items():
        now = after[name]
        assert now[0] is param, f"{name}: the Parameter object was replaced"
        assert (now[1], now[2], now[3], now[4]) == (ptr, stride, grad, dtype), f"{name}: storage/layout/flags changed"
        assert torch.equal(now[5], values), f"{name}: values changed"


def test_the_wrapper_holds_its_own_copy(hf_model):
    model = UnrolledModel(hf_model)
    theirs = storages(hf_model)
    assert all(m.untyped_storage().data_ptr() not in theirs for m in matrices(model))
    expected = hf_logits(hf_model)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.mul_(0.5)  # the caller keeps training / editing their model
    assert (model(IDS).logits - expected).abs().max() <= 1e-4  # the wrapper did not move with it


def test_save_pretrained_works_after_wrapping(hf_model, tmp_path):
    model = UnrolledModel(hf_model)
    hf_model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert (hf_logits(reloaded) - hf_logits(hf_model)).abs().max() <= 1e-6
    assert (model(IDS).logits - hf_logits(reloaded)).abs().max() <= 1e-4


def test_half_after_wrapping_does_not_change_the_wrapper(hf_model):
    model = UnrolledModel(hf_model)
    before = model(IDS).logits
    hf_model.half()
    assert torch.equal(model(IDS).logits, before)
    assert all(m.dtype == torch.float32 for m in matrices(model))


def test_a_second_wrapper_does_not_orphan_the_first(hf_model):
    first = UnrolledModel(hf_model)
    second = UnrolledModel(hf_model)
    expected = hf_logits(hf_model)
    for model in (first, second):
        assert (model(IDS).logits - expected).abs().max() <= 1e-4


# --- share_weights=True: one copy in memory ----------------------------------------------------------------------


def test_share_weights_keeps_every_matrix_in_the_callers_memory(hf_model):
    before_bytes = sum(p.untyped_storage().nbytes() for p in {p.untyped_storage().data_ptr(): p
                                                              for p in hf_model.parameters()}.values())
    expected = hf_logits(hf_model)
    model = UnrolledModel(hf_model, share_weights=True)
    theirs = storages(hf_model)
    assert all(m.untyped_storage().data_ptr() in theirs for m in matrices(model))
    after_bytes = sum(p.untyped_storage().nbytes() for p in {p.untyped_storage().data_ptr(): p
                                                             for p in hf_model.parameters()}.values())
    assert after_bytes == before_bytes  # re-laid, not duplicated
    assert (hf_logits(hf_model) - expected).abs().max() <= 1e-5  # HF computes the same
    assert (model(IDS).logits - expected).abs().max() <= 1e-4


def test_share_weights_keeps_requires_grad(hf_model):
    flags = {name: p.requires_grad for name, p in hf_model.named_parameters()}
    UnrolledModel(hf_model, share_weights=True)
    assert {name: p.requires_grad for name, p in hf_model.named_parameters()} == flags


def test_two_sharing_wrappers_share_one_copy(hf_model):
    first = UnrolledModel(hf_model, share_weights=True)
    second = UnrolledModel(hf_model, share_weights=True)
    for a, b in zip(matrices(first), matrices(second)):
        assert a.data_ptr() == b.data_ptr()
    with torch.no_grad():  # an edit of the HF model reaches both wrappers: neither was orphaned
        for p in hf_model.parameters():
            p.mul_(0.5)
    expected = hf_logits(hf_model)
    for model in (first, second):
        assert (model(IDS).logits - expected).abs().max() <= 1e-4


def test_share_weights_must_be_a_bool(hf_model):
    with pytest.raises(TypeError, match="share_weights"):
        UnrolledModel(hf_model, share_weights="yes")


# --- one vocabulary, one storage convention ----------------------------------------------------------------------


def test_every_architecture_has_the_same_weight_names():
    gpt2, llama = UnrolledModel(random_gpt2()).arch, UnrolledModel(random_llama()).arch
    for arch in (gpt2, llama):
        assert all(isinstance(b, LayerWeights) for b in arch.blocks)
        assert not hasattr(arch, "h") and not hasattr(arch, "layers")  # no HF modules, no private layer class
    assert list(gpt2.blocks[0].named()) == list(llama.blocks[0].named())
    assert gpt2.W_pos is not None and llama.W_pos is None
    assert gpt2.blocks[0].W_gate is None and llama.blocks[0].W_gate is not None


def test_named_weights_are_in_out_views_of_the_hf_weights():
    """Each name against the HF module it comes from: [in, out], so x @ W."""
    hf = random_llama(attention_bias=True, mlp_bias=True)
    arch, layer = UnrolledModel(hf).arch, hf.model.layers[1]
    blk = arch.blocks[1]
    pairs = {"W_Q": layer.self_attn.q_proj, "W_K": layer.self_attn.k_proj, "W_V": layer.self_attn.v_proj,
             "W_O": layer.self_attn.o_proj, "W_gate": layer.mlp.gate_proj, "W_in": layer.mlp.up_proj,
             "W_out": layer.mlp.down_proj}
    for name, linear in pairs.items():
        assert torch.equal(getattr(blk, name), linear.weight.T), name
        assert torch.equal(getattr(blk, "b" + name[1:]), linear.bias), name
    assert torch.equal(arch.W_U, hf.lm_head.weight.T)  # [d_model, d_vocab]
    assert torch.equal(arch.W_E, hf.model.embed_tokens.weight)

    gpt = random_gpt2()
    g_blk, h = UnrolledModel(gpt).arch.blocks[0], gpt.transformer.h[0]
    d = gpt.config.n_embd
    assert torch.equal(g_blk.W_K, h.attn.c_attn.weight[:, d:2 * d]) and torch.equal(g_blk.b_V, h.attn.c_attn.bias[2 * d:])
    assert torch.equal(g_blk.W_in, h.mlp.c_fc.weight) and torch.equal(g_blk.W_out, h.mlp.c_proj.weight)


def test_editing_a_named_view_in_place_changes_the_forward():
    """Pruning one head through W_Q equals the same surgery on an HF copy."""
    hf = random_llama()
    model = UnrolledModel(hf)
    D = model.dims.d_head
    model.arch.blocks[0].W_Q[:, D:2 * D] = 0  # query head 1 of layer 0
    with torch.no_grad():
        hf.model.layers[0].self_attn.q_proj.weight[D:2 * D] = 0
    assert (model(IDS).logits - hf_logits(hf)).abs().max() <= 1e-4


def test_layer_weights_are_frozen_and_replace_rebuilds_the_views():
    blk = UnrolledModel(random_gpt2()).arch.blocks[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        blk.W_O = torch.zeros_like(blk.W_O)
    doubled = dataclasses.replace(blk, W_QKV=2 * blk.W_QKV)
    assert torch.equal(doubled.W_V, 2 * blk.W_V)  # the views follow the new fused matrix


LLAMA_VARIANTS = {  # config fields real Llama-family checkpoints use (Llama 3.x, TinyLlama, Qwen-like biases, MQA)
    "llama3-rope": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
    "linear-rope": {"rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    "rope-theta": {"rope_theta": 500000.0},
    "head-dim-not-d-over-h": {"head_dim": 32},
    "biases": {"attention_bias": True, "mlp_bias": True},
    "tied": {"tie_word_embeddings": True},
    "mqa": {"n_kv_heads": 1},
}


@pytest.mark.parametrize("variant", sorted(LLAMA_VARIANTS))
def test_llama_config_variants_match_hf(variant):
    hf = random_llama(n_layers=2, **LLAMA_VARIANTS[variant])
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(UnrolledModel(hf)(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("field", [{"scale_attn_weights": False}, {"scale_attn_by_inverse_layer_idx": True},
                                   {"reorder_and_upcast_attn": True}, {"activation_function": "relu"}])
def test_gpt2_variants_the_forward_does_not_compute_are_refused(field):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=16, **field))
    with pytest.raises(ValueError, match="not supported"):
        UnrolledModel(hf)


def test_save_pretrained_works_on_a_shared_model_and_on_its_copies(hf_model, tmp_path):
    import copy

    from transformers import AutoModelForCausalLM

    before = {k: v.clone() for k, v in hf_model.state_dict().items()}
    model = UnrolledModel(hf_model, share_weights=True)
    hf_model.save_pretrained(tmp_path / "shared")  # raised "view size is not compatible" before
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "shared")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in before.items())
    twin = copy.deepcopy(hf_model)  # the copy saves its own weights, not the original's
    with torch.no_grad():
        twin.lm_head.weight.add_(1.0)
    twin.save_pretrained(tmp_path / "twin")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "twin")
    assert torch.equal(again.lm_head.weight, twin.lm_head.weight)
    assert not torch.equal(again.lm_head.weight, hf_model.lm_head.weight)
    assert torch.equal(model.arch.W_U.t(), hf_model.lm_head.weight)  # still shared after saving


@pytest.mark.parametrize("share", ["model", "wrapper"])
def test_a_shared_model_saves_the_same_file_as_before_sharing(hf_model, tmp_path, share):
    """Same tensors under the same names: a tied embedding is still written once, not as a second copy."""
    from safetensors.torch import load_file

    from anee_lite import ANEEWrapper

    hf_model.save_pretrained(tmp_path / "plain")
    if share == "model":
        UnrolledModel(hf_model, share_weights=True)
    else:
        ANEEWrapper(hf_model=hf_model, share_weights=True)
    hf_model.save_pretrained(tmp_path / "shared")
    plain, shared = (load_file(tmp_path / name / "model.safetensors") for name in ("plain", "shared"))
    assert sorted(shared) == sorted(plain)
    assert all(torch.equal(shared[k], plain[k]) for k in plain)
