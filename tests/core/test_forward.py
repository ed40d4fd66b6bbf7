"""The unrolled forward against HuggingFace on small random checkpoints built here."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama

from anee_lite import UnrolledModel
from anee_lite.core.attention import position_ids

MODELS = {
    "gpt2-3x64x4": lambda: random_gpt2(),
    "gpt2-2x48x3": lambda: random_gpt2(n_layer=2, n_embd=48, n_head=3, seed=1),
    "gpt2-5x32x1": lambda: random_gpt2(n_layer=5, n_embd=32, n_head=1, seed=2),
    "llama-gqa": lambda: random_llama(),
    "llama-mha": lambda: random_llama(n_layers=2, d_model=48, n_heads=3, n_kv_heads=3, seed=1),
    "llama-mqa-bias": lambda: random_llama(n_layers=4, n_heads=4, n_kv_heads=1, seed=2, attention_bias=True,
                                           mlp_bias=True),
    "llama-head-dim": lambda: random_llama(n_layers=2, d_model=64, n_heads=2, n_kv_heads=1, seed=3, head_dim=24),
    "llama3-rope": lambda: random_llama(seed=4, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                              "original_max_position_embeddings": 32}),
}


@pytest.fixture(params=sorted(MODELS))
def hf_model(request):
    return MODELS[request.param]()


def hf_logits(model, ids, mask=None):
    with torch.no_grad():
        pos = None if mask is None else position_ids(mask)
        return model(ids, attention_mask=mask, position_ids=pos).logits


@pytest.mark.parametrize("batch,tokens", [(1, 1), (1, 17), (3, 9)])
def test_logits_match_huggingface(hf_model, batch, tokens):
    ids = torch.randint(0, VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(tokens))
    expected = hf_logits(hf_model, ids)
    got = UnrolledModel(hf_model)(ids).logits
    assert got.shape == (batch, tokens, VOCAB)
    assert (got - expected).abs().max() <= 1e-4


def test_wrapping_leaves_huggingface_outputs_unchanged(hf_model):
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    before = hf_logits(hf_model, ids)
    UnrolledModel(hf_model)
    assert (hf_logits(hf_model, ids) - before).abs().max() <= 1e-5


def test_left_padded_batch_matches_unpadded_rows(hf_model):
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randint(0, VOCAB, (n,), generator=gen) for n in (9, 4, 6)]
    T = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.zeros(T - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(T - len(r)), torch.ones(len(r))]).long() for r in rows])
    model = UnrolledModel(hf_model)
    padded = model(ids, mask).logits
    assert torch.isfinite(padded).all()
    expected_hf = hf_logits(hf_model, ids, mask)
    for b, r in enumerate(rows):
        alone = model(r[None]).logits[0]
        assert (padded[b, T - len(r):] - alone).abs().max() <= 1e-4
        assert (padded[b, T - len(r):] - expected_hf[b, T - len(r):]).abs().max() <= 1e-4


def test_residual_stream_matches_huggingface_hidden_states(hf_model):
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        hidden = hf_model(ids, output_hidden_states=True).hidden_states
    out = UnrolledModel(hf_model)(ids, return_resid=True)
    stack = out.resid_stack()
    n = len(hidden) - 1
    assert stack.shape[0] == n + 1
    for layer in range(n):  # HF's last entry already has the final norm applied, so it is compared after
        assert (stack[layer] - hidden[layer]).abs().max() <= 1e-4
    final = UnrolledModel(hf_model).arch.final_norm(stack[n])
    assert (final - hidden[n]).abs().max() <= 1e-4


def test_attention_patterns_match_huggingface_eager(hf_model):
    hf_model.config._attn_implementation = "eager"
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = hf_model(ids, output_attentions=True).attentions
    out = UnrolledModel(hf_model)(ids, return_patterns=True)
    for layer, pattern in enumerate(expected):
        got = out.activations[f"blocks.{layer}.attn.hook_pattern"]
        assert (got - pattern).abs().max() <= 1e-5
        assert torch.allclose(got.sum(-1), torch.ones(()))
        assert (got.triu(1) == 0).all()  # causal: no weight on later tokens


def test_logits_to_keep_gives_the_last_rows(hf_model):
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(7))
    model = UnrolledModel(hf_model)
    assert torch.allclose(model(ids, logits_to_keep=3).logits, model(ids).logits[:, -3:], atol=1e-5)


def test_smollm2_logits_match_huggingface(smollm2_hf):
    hf, tok = smollm2_hf
    ids = tok(["The quick brown fox jumps over the lazy dog, and then it"], return_tensors="pt").input_ids
    expected = hf_logits(hf, ids)
    got = UnrolledModel(hf)(ids).logits
    assert (got - expected).abs().max() <= 1e-3
