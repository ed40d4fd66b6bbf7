"""Hooks read and replace activations exactly: against the plain forward, the masks, HuggingFace's own hooks."""

import pytest
import torch
from conftest import hf_blocks, random_gpt2, random_ids, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.core.hooks import HOOK_POINTS, hook_names

MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=3),
    "llama-gqa": lambda: random_llama(n_layers=3),
    "llama-mqa": lambda: random_llama(n_layers=3, n_heads=4, n_kv_heads=1, seed=2),
}
TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(MODELS))
def hf(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def model(hf):
    return UnrolledModel(hf)


@pytest.mark.parametrize("answer", ["none", "same", "copy"])
def test_identity_hooks_at_every_point_change_nothing(model, answer):
    ids = random_ids()
    seen = []

    def hook(t, name):
        seen.append((name, tuple(t.shape)))
        return {"none": None, "same": t, "copy": t.clone()}[answer]

    plain = model(ids, return_patterns=True)
    hooked = model(ids, hooks={n: hook for n in hook_names(model.dims)}, return_patterns=True)
    assert (hooked.logits - plain.logits).abs().max() == 0
    d, (B, T) = model.dims, ids.shape
    shapes = {"hook_resid_pre": (B, T, d.d_model), "attn.hook_pattern": (B, d.n_heads, T, T),
              "attn.hook_z": (B, T, d.n_heads, d.d_head), "hook_resid_mid": (B, T, d.d_model),
              "mlp.hook_post": (B, T, d.d_mlp), "hook_resid_post": (B, T, d.d_model)}
    assert seen == [(f"blocks.{l}.{p}", shapes[p]) for l in range(d.n_layers) for p in HOOK_POINTS]


def test_ablating_a_head_through_hook_z_equals_head_mask(model):
    ids = random_ids()
    layer, head = 1, model.dims.n_heads - 1

    def zero_head(z, name):
        z = z.clone()
        z[:, :, head] = 0  # [B, T, n_heads, d_head]
        return z

    mask = torch.ones(model.dims.n_layers, model.dims.n_heads)
    mask[layer, head] = 0
    hooked = model(ids, hooks={f"blocks.{layer}.attn.hook_z": zero_head}).logits
    masked = model(ids, head_mask=mask).logits
    assert (hooked - masked).abs().max() <= TOL
    assert (hooked - model(ids).logits).abs().max() > 1e-3  # the head mattered


def test_a_zero_attention_pattern_silences_its_head(model):
    """z = pattern @ v: a head whose pattern is zero outputs zero, as head_mask = 0 makes it."""
    ids = random_ids()

    def zero_pattern(p, name):
        p = p.clone()
        p[:, 0] = 0  # [B, n_heads, T, T_k]
        return p

    mask = torch.ones(model.dims.n_layers, model.dims.n_heads)
    mask[2, 0] = 0
    hooked = model(ids, hooks={"blocks.2.attn.hook_pattern": zero_pattern}, return_patterns=True)
    assert (hooked.logits - model(ids, head_mask=mask).logits).abs().max() <= TOL
    assert hooked.activations["blocks.2.attn.hook_pattern"][:, 0].abs().max() == 0  # the record is what was used


def test_hooks_on_heads_of_a_group_never_computed_see_zeros(model):
    """head_mask removing a whole key/value group skips it; hooks see those heads as zero and cannot revive them."""
    d = model.dims
    group = d.n_heads // d.n_kv_heads
    mask = torch.ones(d.n_layers, d.n_heads)
    mask[1, :group] = 0  # the first key/value group, whole
    ids = random_ids()
    seen = {}

    def revive(t, name):
        seen[name] = t.clone()
        return torch.ones_like(t)

    hooked = model(ids, head_mask=mask, hooks={"blocks.1.attn.hook_z": revive}).logits
    assert seen["blocks.1.attn.hook_z"][:, :, :group].abs().max() == 0
    ones_elsewhere = model(ids, head_mask=mask, hooks={"blocks.1.attn.hook_z": lambda t, n: torch.cat(
        [t[:, :, :group], torch.ones_like(t[:, :, group:])], dim=2)}).logits
    assert (hooked - ones_elsewhere).abs().max() <= TOL


@pytest.mark.parametrize("point", ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "mlp.hook_post"])
def test_hooked_decoding_with_the_cache_equals_the_hooked_full_forward(model, point):
    """Keys and values computed under a hook are cached as computed: token by token equals all at once."""
    ids = random_ids(batch=1, tokens=6, seed=3)
    hooks = {f"blocks.1.{point}": lambda t, name: 1.5 * t}
    full = model(ids, hooks=hooks).logits
    cache, steps = None, []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True, hooks=hooks)
        cache = out.past_key_values
        steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL
    assert (full - model(ids).logits).abs().max() > 1e-3


def hf_with_pre_hook(hf, ids, layer, fn, n_layers=None):
    """HuggingFace's logits with ``fn`` applied to the hidden state entering block ``layer`` (a forward pre-hook),
    read after ``n_layers`` blocks through the final norm and unembedding (None: all)."""
    handle = hf_blocks(hf)[layer].register_forward_pre_hook(
        lambda module, args, kwargs: ((fn(args[0]),) + args[1:], kwargs) if args else
        (args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}), with_kwargs=True)
    try:
        with torch.no_grad():
            out = hf(ids, output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    if n_layers is None or n_layers == hf.config.num_hidden_layers:
        return out.logits
    final_norm = hf.transformer.ln_f if hf.config.model_type == "gpt2" else hf.model.norm
    with torch.no_grad():
        return hf.lm_head(final_norm(out.hidden_states[n_layers]))


@pytest.mark.parametrize("exit_layer", [3, 2])
def test_a_resid_hook_matches_huggingface_forward_pre_hook_also_with_early_exit(hf, model, exit_layer):
    ids = random_ids()
    noise = torch.randn(model.dims.d_model, generator=torch.Generator().manual_seed(5))

    def shift(t, name=None):
        return t + noise

    ours = model(ids, exit_layers=exit_layer, hooks={"blocks.1.hook_resid_pre": shift}).logits
    theirs = hf_with_pre_hook(hf, ids, 1, shift, n_layers=exit_layer)
    assert (ours - theirs).abs().max() <= TOL


def test_hooks_run_only_at_layers_the_call_runs(model):
    """Past the deepest exit nothing runs; a skipped layer passes its residual through the three resid points."""
    ids = random_ids()
    called = []

    def spy(t, name):
        called.append(name)

    model(ids, exit_layers=1, hooks={n: spy for n in hook_names(model.dims)})
    assert called == [f"blocks.0.{p}" for p in HOOK_POINTS]
    called.clear()
    out = model(ids, skip_layers=[1], hooks={n: spy for n in hook_names(model.dims)})
    assert [n for n in called if n.startswith("blocks.1.")] == [
        "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"]
    doubled = model(ids, skip_layers=[1], hooks={"blocks.1.hook_resid_mid": lambda t, n: 2 * t}).logits
    by_hand = model(ids, skip_layers=[1], hooks={"blocks.2.hook_resid_pre": lambda t, n: 2 * t}).logits
    assert (doubled - by_hand).abs().max() <= TOL and (doubled - out.logits).abs().max() > 1e-3


@pytest.mark.parametrize("point", ["hook_resid_pre", "hook_resid_post"])
def test_per_token_exits_under_a_hook_decode_the_same_with_the_cache(model, point):
    """Exited tokens keep their frozen residual whatever a hook returns, so the keys and values deeper layers take
    from it are the same whether computed in the call (all tokens at once) or later by the cache (one by one)."""
    ids = random_ids(batch=1, tokens=7, seed=4)
    exits = torch.tensor([[3, 1, 2, 0, 3, 1, 2]])
    hooks = {f"blocks.1.{point}": lambda t, n: 0.5 * t + 0.1}
    full = model(ids, exit_layers=exits, hooks=hooks).logits
    cache, steps = None, []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], exit_layers=exits[:, t:t + 1], past_key_values=cache, use_cache=True,
                    hooks=hooks)
        cache = out.past_key_values
        steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL
    plain = model(ids, exit_layers=exits).logits
    unreached = exits <= 1  # tokens that stop before layer 1 never meet the hook
    assert (full[unreached] - plain[unreached]).abs().max() == 0
    assert (full[~unreached] - plain[~unreached]).abs().max() > 1e-3


@settings(max_examples=40, deadline=None)
@given(name=st.one_of(st.text(max_size=30), st.sampled_from([
    "blocks.3.hook_resid_pre", "blocks.-1.hook_resid_pre", "blocks.01.hook_resid_pre", "blocks.0.hook_z",
    "blocks.0.attn.hook_q", "hook_resid_pre", "blocks.0", "blocks..hook_resid_pre", "blocks.0.mlp.hook_pre"])))
def test_names_that_are_not_hook_points_are_refused_with_the_valid_ones(llama4, name):
    if name in hook_names(llama4.dims):
        return
    with pytest.raises(ValueError, match=r"valid names are 'blocks\.\{l\}\.\{point\}' with l in 0\.\.3"):
        llama4(random_ids(1, 3), hooks={name: lambda t, n: None})


@pytest.mark.parametrize("hooks,error,match", [
    ([("blocks.0.hook_resid_pre", print)], TypeError, "hooks must be a dict"),
    ({"blocks.0.hook_resid_pre": "double"}, TypeError, "must be a function"),
    ({1: lambda t, n: None}, TypeError, "hook names must be strings"),
    ({"blocks.0.hook_resid_pre": lambda t, n: t[:, :1]}, ValueError, "of the shape it was given"),
    ({"blocks.0.attn.hook_z": lambda t, n: t.flatten(2)}, ValueError, r"blocks\.0\.attn\.hook_z"),
    ({"blocks.1.mlp.hook_post": lambda t, n: t.tolist()}, TypeError, "must return a tensor or None"),
    ({"blocks.1.hook_resid_post": lambda t, n: t.long()}, TypeError, "floating-point"),
])
def test_bad_hooks_are_refused_with_the_hook_named(llama4, hooks, error, match):
    with pytest.raises(error, match=match):
        llama4(random_ids(1, 3), hooks=hooks)


def test_a_failing_hook_leaves_the_cache_as_it_was(llama4):
    ids = random_ids(1, 4)
    cache = llama4(ids, use_cache=True).past_key_values
    before = len(cache)

    def boom(t, name):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        llama4(ids[:, :1], past_key_values=cache, hooks={"blocks.2.hook_resid_pre": boom})
    assert len(cache) == before
