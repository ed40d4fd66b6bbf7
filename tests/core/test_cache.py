"""The KV cache under per-token early exit: exact against the uncached forward and against HF."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from anee_lite import ANEEConfig, ANEEWrapper, UnrolledModel, greedy_generate
from anee_lite.core.attention import position_ids

PROMPT = "The history of the printing press begins in"

SMALL_MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=6, n_positions=128),
    "llama": lambda: random_llama(n_layers=5),
}


@pytest.fixture(params=sorted(SMALL_MODELS))
def small_model(request):
    return UnrolledModel(SMALL_MODELS[request.param]())


@pytest.fixture(scope="module")
def smollm2(smollm2_hf):
    hf, tokenizer = smollm2_hf
    return UnrolledModel(hf), tokenizer


def random_case(model, batch=2, tokens=14, pad=(0, 4), seed=0):
    """Random ids, a left-padding mask (row b has pad[b] padding tokens) and per-token exit layers."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.dims.d_vocab
    ids = torch.randint(0, vocab, (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    for b, n in enumerate(pad[:batch]):
        mask[b, :n] = 0
    exits = torch.randint(1, model.dims.n_layers + 1, (batch, tokens), generator=g)
    return ids, mask, exits


def cached_logits(model, ids, mask, exits, chunks):
    """Feed the tokens in chunks of the given sizes through one cache; concatenate the logits."""
    logits, cache, start = [], None, 0
    for size in chunks:
        end = start + size
        out = model(ids[:, start:end], mask[:, :end], exit_layers=exits[:, start:end], past_key_values=cache,
                    use_cache=True)
        logits.append(out.logits)
        cache, start = out.past_key_values, end
    assert start == ids.shape[1]
    return torch.cat(logits, dim=1), cache  # [B, T, d_vocab]


SCHEDULES = {
    "prefill-then-1": [5] + [1] * 9,
    "chunks-of-2": [4] + [2] * 5,
    "chunks-of-3": [2] + [3] * 4,
    "mixed": [1, 3, 1, 2, 1, 3, 2, 1],
}


# --- full depth: the same tokens as HuggingFace's generate -------------------------------------------------


@pytest.mark.slow
def test_full_depth_generation_matches_hf_generate_smollm2(smollm2_hf, smollm2):
    hf, tokenizer = smollm2_hf
    model = smollm2[0]
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, min_new_tokens=64,
                           do_sample=False, pad_token_id=tokenizer.pad_token_id)
    got = greedy_generate(model, ids, max_new_tokens=64)
    assert got.sequences.shape == (1, ids.shape[1] + 64)
    assert torch.equal(got.sequences, expected)
    assert got.kv_propagated == 0


def test_full_depth_generation_matches_hf_generate_random_gpt2():
    hf = random_gpt2(n_layer=4, n_positions=128, seed=5)
    hf.generation_config.eos_token_id = None  # generate all 64 tokens, like ours without eos_token_id
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=64, do_sample=False, pad_token_id=0)
    got = greedy_generate(UnrolledModel(hf), ids, mask, max_new_tokens=64)
    assert torch.equal(got.sequences, expected)


# --- per-token exits: cached incremental decoding equals the uncached forward ---------------------------------


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("pad", [(0, 0), (0, 4)], ids=["no-padding", "left-padding"])
def test_cached_decoding_with_random_exits_matches_uncached(small_model, schedule, pad):
    ids, mask, exits = random_case(small_model, pad=pad, seed=len(schedule))
    expected = small_model(ids, mask, exit_layers=exits).logits  # [B, T, d_vocab]
    got, cache = cached_logits(small_model, ids, mask, exits, SCHEDULES[schedule])
    real = mask.bool()  # padding positions have no meaning of their own
    assert (got - expected)[real].abs().max() <= 1e-4
    assert len(cache) == ids.shape[1]


@pytest.mark.slow
def test_cached_decoding_with_random_exits_matches_uncached_smollm2(smollm2):
    model, _ = smollm2
    ids, mask, exits = random_case(model, batch=2, tokens=12, pad=(0, 3), seed=1)
    expected = model(ids, mask, exit_layers=exits).logits
    real = mask.bool()
    for chunks in ([4] + [1] * 8, [3, 2, 3, 2, 2]):
        got, _ = cached_logits(model, ids, mask, exits, chunks)
        assert (got - expected)[real].abs().max() <= 1e-3


def test_controller_exits_are_cached_exactly(small_model):
    """A controller decides exits on the fly; replaying its decisions without a cache gives the same logits."""
    g = torch.Generator().manual_seed(3)
    stop_at = torch.randint(1, small_model.dims.n_layers + 1, (1, 9), generator=g)
    step = {"t": 0}

    def controller(layer, resid, active):
        t = step["t"]
        return (stop_at[:, t:t + resid.shape[1]] == layer).expand_as(active)

    ids = torch.randint(0, VOCAB, (1, 9), generator=g)
    cache, logits = None, []
    for t in range(9):
        step["t"] = t
        out = small_model(ids[:, t:t + 1], controller=controller, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits)
        assert torch.equal(out.stats.exit_layers, stop_at[:, t:t + 1])
    expected = small_model(ids, exit_layers=stop_at).logits
    assert (torch.cat(logits, dim=1) - expected).abs().max() <= 1e-4


# --- a static budget: every token exits at the same layer --------------------------------------------------------


@pytest.mark.slow
def test_static_budget_cached_and_uncached_generation_agree(smollm2_hf):
    hf, tokenizer = smollm2_hf
    wrapper = ANEEWrapper(ANEEConfig(model_name="smollm2-135m"), hf_model=hf, tokenizer=tokenizer)
    prompts = [PROMPT, "Water boils at"]  # rows of different lengths: left padding
    cached = wrapper.generate(prompt=prompts, max_new_tokens=12, energy_budget=0.6, use_cache=True)
    uncached = wrapper.generate(prompt=prompts, max_new_tokens=12, energy_budget=0.6, use_cache=False)
    assert wrapper.exit_layer(0.6) < wrapper.n_layers
    assert cached == uncached
    assert all(len(text) > len(p) for text, p in zip(cached, prompts))


def test_static_exit_never_fills_layers_nobody_reaches(small_model):
    n = small_model.dims.n_layers
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    result = greedy_generate(small_model, ids, max_new_tokens=5, exit_layers=n - 2)
    full = greedy_generate(small_model, ids, max_new_tokens=5, exit_layers=n - 2, use_cache=False)
    assert torch.equal(result.sequences, full.sequences)
    assert result.kv_propagated == 0 and result.kv_propagated_per_step == [0] * 5
    out = small_model(ids, exit_layers=n - 2, use_cache=True)
    cache = out.past_key_values
    assert [cache.layer_length(layer) for layer in range(n)] == [6] * (n - 2) + [0, 0]
    dims = small_model.dims
    by_hand = 4 * (2 * (n - 2) * dims.n_kv_heads * 6 * dims.d_head + 6 * dims.d_model)  # fp32 K, V, residuals
    assert cache.nbytes() == by_hand


# --- propagated keys and values are what the definition says --------------------------------------------------


def kv_by_hand(hf, layer, resid, positions):
    """K and V [B, K, T, D] of a residual at ``layer``, straight from the HF modules."""
    B, T, d = resid.shape
    if hf.config.model_type == "gpt2":
        blk = hf.transformer.h[layer]
        k, v = blk.attn.c_attn(blk.ln_1(resid)).split(d, dim=-1)[1:]  # HF Conv1D: x @ W + b
        n_kv = hf.config.n_head
    else:
        blk = hf.model.layers[layer]
        x = blk.input_layernorm(resid)
        k, v = blk.self_attn.k_proj(x), blk.self_attn.v_proj(x)
        n_kv = hf.config.num_key_value_heads
    k, v = (t.view(B, T, n_kv, -1).transpose(1, 2) for t in (k, v))  # [B, K, T, D]
    if hf.config.model_type == "llama":
        cos, sin = hf.model.rotary_emb(v, positions)
        _, k = apply_rotary_pos_emb(k, k, cos, sin)
    return k, v


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_propagated_kv_equals_the_definition(name):
    hf = SMALL_MODELS[name]()
    model = UnrolledModel(hf)
    n = model.dims.n_layers
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    exits = torch.tensor([[n, 2, 1, n, 3, n], [n, n, 1, 2, n - 1, n]])
    _, cache = cached_logits(model, ids, mask, exits, [1] * 6)
    with torch.no_grad():
        resid = model(ids, mask, exit_layers=exits, return_resid=True).resid_stack()  # [n + 1, B, T, d]
        positions = position_ids(mask.bool())
        for b, t in [(0, 1), (0, 2), (0, 4), (1, 2), (1, 3), (1, 4)]:
            L = int(exits[b, t])
            frozen = resid[L, b:b + 1, t:t + 1]  # [1, 1, d] the residual it left with
            assert torch.allclose(cache.resid[b, t], frozen[0, 0], atol=1e-5)
            for layer in range(L, n):
                k, v = kv_by_hand(hf, layer, frozen, positions[b:b + 1, t:t + 1])
                ours_k, ours_v = model.arch.attn_kv(layer, frozen, model.arch.position_info(positions[b:b + 1, t:t + 1]))
                assert torch.allclose(cache.keys[layer][b, :, t], k[0, :, 0], atol=1e-5)
                assert torch.allclose(cache.values[layer][b, :, t], v[0, :, 0], atol=1e-5)
                assert torch.allclose(ours_k, k, atol=1e-5) and torch.allclose(ours_v, v, atol=1e-5)
    assert cache.propagated == int((n - exits).sum())


def test_lazy_fill_equals_eager_fill(small_model):
    """Filling a layer only when a later token needs it gives the entries that filling at exit time would."""
    n = small_model.dims.n_layers
    ids, mask, exits = random_case(small_model, tokens=10, pad=(0, 2), seed=7)
    exits[:, -1] = n  # the last token runs every layer, so every layer ends up filled
    _, lazy = cached_logits(small_model, ids, mask, exits, [1] * 10)
    eager = small_model(ids, mask, exit_layers=exits, use_cache=True).past_key_values  # one call: filled in-layer
    assert lazy.propagated == eager.propagated == int((n - exits).sum())
    for layer in range(n):
        assert lazy.layer_length(layer) == eager.layer_length(layer) == 10
        assert torch.allclose(lazy.keys[layer], eager.keys[layer], atol=1e-5)
        assert torch.allclose(lazy.values[layer], eager.values[layer], atol=1e-5)


def test_lazy_fill_waits_until_a_token_needs_the_layer(small_model):
    n = small_model.dims.n_layers
    ids = torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(2))
    cache = small_model(ids[:, :2], exit_layers=n, use_cache=True).past_key_values
    cache = small_model(ids[:, 2:3], exit_layers=1, past_key_values=cache, use_cache=True).past_key_values
    assert [cache.layer_length(layer) for layer in range(n)] == [3] + [2] * (n - 1)
    assert cache.propagated == 0
    cache = small_model(ids[:, 3:4], exit_layers=3, past_key_values=cache, use_cache=True).past_key_values
    assert [cache.layer_length(layer) for layer in range(n)] == [4] * 3 + [2] * (n - 3)
    assert cache.propagated == 2  # token 2 at layers 1 and 2


def test_zero_layers_predicts_from_the_embeddings_with_and_without_cache(small_model):
    """exit_layers=0 is public: no block runs; deeper tokens still see the token through propagated K/V."""
    ids, mask, exits = random_case(small_model, pad=(0, 4), seed=11)
    exits[:, ::3] = 0  # every third token runs no layer
    positions = position_ids(mask.bool())
    alone = small_model(ids, mask, exit_layers=0).logits
    assert torch.allclose(alone, small_model.logits_from_resid(small_model.arch.embed(ids, positions)), atol=1e-6)
    expected = small_model(ids, mask, exit_layers=exits).logits
    got, _ = cached_logits(small_model, ids, mask, exits, SCHEDULES["prefill-then-1"])
    assert (got - expected)[mask.bool()].abs().max() <= 1e-4
    steps = greedy_generate(small_model, ids[:1], max_new_tokens=3, exit_layers=0)
    assert steps.layers_per_token == [torch.tensor([0])] * 3


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, "n+1"])
def test_exit_layers_out_of_range(small_model, bad):
    n = small_model.dims.n_layers
    value = n + 1 if bad == "n+1" else bad
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="exit_layers"):
        small_model(ids, exit_layers=torch.tensor([[1, value, n]]))
    with pytest.raises(ValueError, match="exit_layers"):
        small_model(ids, exit_layers=value)
    cache = small_model(ids, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="exit_layers"):
        small_model(ids[:, :1], exit_layers=torch.tensor([[value]]), past_key_values=cache)


def test_exit_layers_wrong_shape_or_dtype(small_model):
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="exit_layers must have shape"):
        small_model(ids, exit_layers=torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="exit_layers must have shape"):
        small_model(ids, exit_layers=torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="exit_layers must hold integers"):
        small_model(ids, exit_layers=torch.ones(2, 3))


def test_cache_from_another_model_is_refused(small_model):
    ids = torch.zeros(1, 3, dtype=torch.long)
    cache = small_model(ids, use_cache=True).past_key_values
    for other in (UnrolledModel(random_gpt2(n_layer=6, n_positions=128)), UnrolledModel(random_llama(n_layers=5))):
        with pytest.raises(ValueError, match="past_key_values must be a cache returned by this same model"):
            other(ids[:, :1], past_key_values=cache)
    with pytest.raises(TypeError, match="past_key_values must be the KVCache"):  # a wrong type, not a wrong value
        small_model(ids[:, :1], past_key_values={"not": "a cache"})


def test_cache_with_another_batch_size_is_refused(small_model):
    cache = small_model(torch.zeros(2, 3, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="past_key_values holds a batch of 2, but input_ids has batch 1"):
        small_model(torch.zeros(1, 1, dtype=torch.long), past_key_values=cache)


def test_attention_mask_that_disagrees_with_the_cache_is_refused(small_model):
    ids = torch.zeros(2, 3, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    cache = small_model(ids, mask, use_cache=True).past_key_values
    step = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="first columns must repeat the mask"):
        small_model(step, torch.ones(2, 4, dtype=torch.long), past_key_values=cache)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \[2, 4\]"):
        small_model(step, torch.ones(2, 2, dtype=torch.long), past_key_values=cache)
    small_model(step, torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1), past_key_values=cache)  # fine


# --- truncate: rolling back tokens (rejected speculative drafts) ---------------------------------------------------


@pytest.mark.parametrize("pad", [(0, 0), (0, 4)], ids=["no-padding", "left-padding"])
def test_truncate_then_continue_equals_never_having_seen_the_tokens(small_model, pad):
    ids, mask, exits = random_case(small_model, pad=pad)
    wrong = torch.randint(0, small_model.dims.d_vocab, (2, 3), generator=torch.Generator().manual_seed(9))
    out = small_model(ids[:, :10], mask[:, :10], exit_layers=exits[:, :10], use_cache=True)
    cache = out.past_key_values
    ones = torch.ones(2, 3, dtype=torch.long)
    small_model(wrong, torch.cat([mask[:, :10], ones], 1), past_key_values=cache, use_cache=True)
    assert len(cache) == 13
    cache.truncate(10)
    assert len(cache) == 10 and all(cache.layer_length(l) <= 10 for l in range(small_model.dims.n_layers))
    got = small_model(ids[:, 10:], mask, exit_layers=exits[:, 10:], past_key_values=cache, use_cache=True)
    expected = small_model(ids, mask, exit_layers=exits)
    torch.testing.assert_close(got.logits, expected.logits[:, 10:], rtol=1e-4, atol=1e-4)


def test_truncate_keeps_lagging_layers_lagging(small_model):
    ids, _, _ = random_case(small_model, pad=(0, 0))
    cache = small_model(ids[:, :8], use_cache=True).past_key_values
    small_model(ids[:, 8:], exit_layers=1, past_key_values=cache, use_cache=True)
    assert cache.layer_length(0) == 14 and cache.layer_length(1) == 8  # the last 6 exited after layer 0
    cache.truncate(10)
    assert len(cache) == 10 and cache.layer_length(0) == 10 and cache.layer_length(1) == 8
    assert cache.resid.shape[1] == cache.positions.shape[1] == cache.attention_mask.shape[1] == 10
    cache.truncate(5)
    assert cache.layer_length(0) == 5 and cache.layer_length(1) == 5
    cache.truncate(0)
    assert len(cache) == 0 and cache.layer_length(0) == 0


@settings(max_examples=25, deadline=None)
@given(length=st.one_of(st.integers(-20, -1), st.integers(7, 100)))
def test_truncate_out_of_range_is_refused(length):
    model = UnrolledModel(random_gpt2(n_layer=2))
    cache = model(torch.arange(6)[None], use_cache=True).past_key_values
    with pytest.raises(ValueError, match="length"):
        cache.truncate(length)
    assert len(cache) == 6


@pytest.mark.parametrize("bad", [2.0, "3", True, None])
def test_truncate_wrong_type_is_refused(bad):
    model = UnrolledModel(random_gpt2(n_layer=2))
    cache = model(torch.arange(6)[None], use_cache=True).past_key_values
    with pytest.raises(TypeError, match="length"):
        cache.truncate(bad)


@given(layer=st.one_of(st.integers(max_value=-1), st.integers(min_value=3), st.booleans(), st.floats(), st.text()))
@settings(max_examples=30, deadline=None)
def test_layer_length_refuses_layers_outside_the_model(layer):
    # -1 used to answer for the last layer, 99 ended in an IndexError.
    model = UnrolledModel(random_gpt2(n_layer=3))
    cache = model(torch.tensor([[1, 2, 3]]), use_cache=True).past_key_values
    with pytest.raises((TypeError, ValueError), match="layer"):
        cache.layer_length(layer)
    assert [cache.layer_length(l) for l in range(3)] == [3, 3, 3]
