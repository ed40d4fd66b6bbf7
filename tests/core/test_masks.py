"""Layer, head, neuron and activation masks against weight surgery on HuggingFace copies."""

import copy

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import ANEEConfig, ANEEWrapper, UnrolledModel
from anee_lite.core import ActivationThresholds

MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=4),
    "llama-gqa": lambda: random_llama(n_layers=4),
    "llama-mqa-bias": lambda: random_llama(n_layers=3, n_heads=4, n_kv_heads=1, seed=2, attention_bias=True,
                                           mlp_bias=True),
}
TOL = 1e-4


@pytest.fixture(params=sorted(MODELS))
def hf_model(request):
    return MODELS[request.param]()


def ids_for(batch=2, tokens=9, seed=0):
    return torch.randint(0, VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def blocks(hf):
    return hf.transformer.h if hf.config.model_type == "gpt2" else hf.model.layers


def scale_head_in_output_projection(hf, layer, head, factor):
    """Surgery: multiply head ``head``'s slice of layer ``layer``'s output projection by ``factor``."""
    blk = blocks(hf)[layer]
    with torch.no_grad():
        if hf.config.model_type == "gpt2":  # Conv1D c_proj: weight [H * D, d]
            D = hf.config.n_embd // hf.config.n_head
            blk.attn.c_proj.weight[head * D:(head + 1) * D] *= factor
        else:  # Linear o_proj: weight [d, H * D]
            D = blk.self_attn.head_dim
            blk.self_attn.o_proj.weight[:, head * D:(head + 1) * D] *= factor


def scale_neuron_in_down_projection(hf, layer, neuron, factor):
    blk = blocks(hf)[layer]
    with torch.no_grad():
        if hf.config.model_type == "gpt2":  # Conv1D c_proj: weight [d_mlp, d]
            blk.mlp.c_proj.weight[neuron] *= factor
        else:  # Linear down_proj: weight [d, d_mlp]
            blk.mlp.down_proj.weight[:, neuron] *= factor


def remove_blocks(hf, skip):
    kept = torch.nn.ModuleList([b for i, b in enumerate(blocks(hf)) if i not in skip])
    if hf.config.model_type == "gpt2":
        hf.transformer.h = kept
        hf.config.n_layer = len(kept)
    else:
        hf.model.layers = kept
        hf.config.num_hidden_layers = len(kept)
        if getattr(hf.config, "layer_types", None):
            hf.config.layer_types = [t for i, t in enumerate(hf.config.layer_types) if i not in skip]
    return hf


def test_all_ones_masks_equal_the_plain_forward(hf_model):
    model = UnrolledModel(hf_model)
    dims, ids = model.dims, ids_for()
    plain = model(ids).logits
    ones = model(ids, skip_layers=[], head_mask=torch.ones(dims.n_layers, dims.n_heads),
                 mlp_mask=torch.ones(dims.n_layers, dims.d_mlp, dtype=torch.bool), activation_sparsity=0.0).logits
    assert (ones - plain).abs().max() <= TOL


def test_masked_heads_equal_zeroed_output_projection_slices(hf_model):
    surgery = copy.deepcopy(hf_model)
    model = UnrolledModel(hf_model)
    dims = model.dims
    mask = torch.ones(dims.n_layers, dims.n_heads)
    gen = torch.Generator().manual_seed(1)
    for layer in range(dims.n_layers):
        for head in torch.randperm(dims.n_heads, generator=gen)[:2].tolist():
            factor = 0.0 if (layer + head) % 2 else 0.37  # removed heads and a soft (Michel-style) scale
            mask[layer, head] = factor
            scale_head_in_output_projection(surgery, layer, head, factor)
    ids = ids_for()
    assert (model(ids, head_mask=mask).logits - hf_logits(surgery, ids)).abs().max() <= TOL
    assert (model(ids, head_mask=mask).logits - model(ids).logits).abs().max() > 1e-3  # the mask did something


def test_masked_neurons_equal_zeroed_down_projection_rows(hf_model):
    surgery = copy.deepcopy(hf_model)
    model = UnrolledModel(hf_model)
    dims = model.dims
    gen = torch.Generator().manual_seed(2)
    mask = (torch.rand(dims.n_layers, dims.d_mlp, generator=gen) > 0.4).float()
    for layer, neuron in (mask == 0).nonzero().tolist():
        scale_neuron_in_down_projection(surgery, layer, neuron, 0.0)
    ids = ids_for()
    assert (model(ids, mlp_mask=mask).logits - hf_logits(surgery, ids)).abs().max() <= TOL
    assert (model(ids, mlp_mask=mask.bool()).logits - hf_logits(surgery, ids)).abs().max() <= TOL


@pytest.mark.parametrize("skip", [[1], [0, 2], [3]])
def test_skipped_layers_equal_a_model_without_those_blocks(hf_model, skip):
    skip = [s for s in skip if s < hf_model.config.num_hidden_layers] or [1]
    removed = remove_blocks(copy.deepcopy(hf_model), skip)
    model = UnrolledModel(hf_model)
    ids = ids_for()
    out = model(ids, skip_layers=skip, return_resid=True)
    assert (out.logits - hf_logits(removed, ids)).abs().max() <= TOL
    acts = out.activations
    for layer in skip:  # a skipped layer is the identity in the residual stream
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_post"], acts[f"blocks.{layer}.hook_resid_pre"])


def test_skipped_layer_caches_nothing(hf_model):
    model = UnrolledModel(hf_model)
    cache = model(ids_for(1, 5), skip_layers=[1], use_cache=True).past_key_values
    assert cache.layer_length(1) == 0 and cache.layer_length(0) == 5


def test_masks_combine_with_exits_and_cache_exactly(hf_model):
    """Token by token with a cache equals one uncached forward, under masks, skips and per-token exits."""
    model = UnrolledModel(hf_model)
    dims = model.dims
    gen = torch.Generator().manual_seed(3)
    knobs = {"skip_layers": [1], "head_mask": (torch.rand(dims.n_layers, dims.n_heads, generator=gen) > 0.3).float(),
             "mlp_mask": (torch.rand(dims.n_layers, dims.d_mlp, generator=gen) > 0.3).float(),
             "activation_sparsity": 0.4}
    ids = ids_for(2, 8, seed=4)
    exits = torch.randint(1, dims.n_layers + 1, ids.shape, generator=gen)
    full = model(ids, exit_layers=exits, **knobs).logits
    cache, steps = None, []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], exit_layers=exits[:, t:t + 1], past_key_values=cache, use_cache=True, **knobs)
        cache = out.past_key_values
        steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL


def test_cache_refuses_other_masks(hf_model):
    model = UnrolledModel(hf_model)
    cache = model(ids_for(1, 4), skip_layers=[0], use_cache=True).past_key_values
    with pytest.raises(ValueError, match="skip_layers"):
        model(ids_for(1, 1), skip_layers=[1], past_key_values=cache, use_cache=True)
    model(ids_for(1, 1), skip_layers=(0, 0), past_key_values=cache, use_cache=True)  # the same set is fine


def test_cache_keeps_the_masks_that_filled_it(hf_model):
    # The cache held the caller's own mask tensors: edited in place between calls, the new mask passed as
    # "the same" and the new token attended to keys computed under the old one.
    model = UnrolledModel(hf_model)
    dims = model.dims
    head_mask, mlp_mask = torch.ones(dims.n_layers, dims.n_heads), torch.ones(dims.n_layers, dims.d_mlp)
    thresholds = ActivationThresholds(0.5, torch.zeros(dims.n_layers, 4))
    for knob, mask in (("head_mask", head_mask), ("mlp_mask", mlp_mask), ("activation_sparsity", thresholds)):
        cache = model(ids_for(1, 4), **{knob: mask}, use_cache=True).past_key_values
        (mask.thresholds if knob == "activation_sparsity" else mask)[0, ...] = 0.5
        with pytest.raises(ValueError, match="past_key_values was filled under other"):
            model(ids_for(1, 1), **{knob: mask}, past_key_values=cache, use_cache=True)


def input_sparsity_hooks(hf, spec):
    """Reference on the HF model: pre-hooks that zero the small entries of every linear map's input.

    ``spec`` is a float (per token, exactly that share of each input, by magnitude) or
    ActivationThresholds (``|x| >= thresholds[layer, matrix]``). Independent of the library's forward.
    """
    def zero_small(layer, site):
        def hook(module, args):
            (x,) = args
            mag = x.abs()
            if isinstance(spec, ActivationThresholds):
                keep = mag >= spec.thresholds[layer, site]
            else:
                n_zero = int(spec * x.shape[-1])
                keep = mag > mag.kthvalue(n_zero, dim=-1, keepdim=True).values if n_zero else torch.ones_like(x).bool()
            return (x * keep,)
        return hook

    handles = []
    for layer, blk in enumerate(blocks(hf)):
        if hf.config.model_type == "gpt2":
            sites = [(blk.attn.c_attn, 0), (blk.attn.c_proj, 1), (blk.mlp.c_fc, 2), (blk.mlp.c_proj, 3)]
        else:
            a, m = blk.self_attn, blk.mlp
            sites = [(a.q_proj, 0), (a.k_proj, 0), (a.v_proj, 0), (a.o_proj, 1), (m.gate_proj, 2), (m.up_proj, 2),
                     (m.down_proj, 3)]
        handles += [module.register_forward_pre_hook(zero_small(layer, site)) for module, site in sites]
    return handles


def dense_thresholds(model, ids, q=0.5):
    """Per-layer, per-matrix magnitude quantiles of the dense model's inputs on ``ids``: [n_layers, 4]."""
    acts = model(ids, return_linear_inputs=True).activations
    hooks = ("ln1.hook_normalized", "attn.hook_z", "ln2.hook_normalized", "mlp.hook_post")
    return torch.tensor([[acts[f"blocks.{l}.{h}"].abs().flatten().quantile(q).item() for h in hooks]
                         for l in range(model.dims.n_layers)])


@pytest.mark.parametrize("kind", ["fraction", "thresholds"])
def test_activation_sparsity_equals_zeroed_inputs_of_every_hf_linear(hf_model, kind):
    model = UnrolledModel(hf_model)
    ids = ids_for(2, 9)
    spec = 0.5 if kind == "fraction" else ActivationThresholds(0.5, dense_thresholds(model, ids))
    handles = input_sparsity_hooks(hf_model, spec)
    try:
        reference = hf_logits(hf_model, ids)
    finally:
        for h in handles:
            h.remove()
    got = model(ids, activation_sparsity=spec).logits
    assert (got - reference).abs().max() <= TOL
    assert (got - model(ids).logits).abs().max() > 1e-3  # the sparsity did something


def test_decoding_with_activation_sparsity_equals_the_uncached_forward(hf_model):
    """One token at a time (rows read through embedding_bag) equals the batched masked products."""
    model = UnrolledModel(hf_model)
    ids = ids_for(1, 10, seed=6)
    for spec in (0.6, ActivationThresholds(0.6, dense_thresholds(model, ids, 0.6))):
        full = model(ids, activation_sparsity=spec).logits
        cache, steps = None, []
        for t in range(ids.shape[1]):
            out = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True, activation_sparsity=spec)
            cache, steps = out.past_key_values, steps + [out.logits]
        assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL


def test_zero_thresholds_change_nothing(hf_model):
    model = UnrolledModel(hf_model)
    ids = ids_for(1, 6)
    zero = ActivationThresholds(0.9, torch.zeros(model.dims.n_layers, 4))  # |x| >= 0 keeps every entry
    plain = model(ids, use_cache=True)
    sparse = model(ids, activation_sparsity=zero, use_cache=True)
    assert (sparse.logits - plain.logits).abs().max() <= TOL
    step = ids_for(1, 1, seed=9)  # the row-reading path, every row kept
    got = model(step, activation_sparsity=zero, past_key_values=sparse.past_key_values, use_cache=True).logits
    assert (got - model(step, past_key_values=plain.past_key_values, use_cache=True).logits).abs().max() <= TOL


@given(d_in=st.integers(1, 64), d_out=st.integers(1, 48), share=st.floats(0, 1), seed=st.integers(0, 2**16),
       threads=st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_sparse_matvec_equals_the_dense_product_of_the_masked_input(d_in, d_out, share, seed, threads):
    from anee_lite.core.masks import sparse_input_linear, sparse_matvec

    gen = torch.Generator().manual_seed(seed)
    x, w, b = torch.randn(d_in, generator=gen), torch.randn(d_in, d_out, generator=gen), torch.randn(d_out)
    keep = torch.rand(d_in, generator=gen) < share
    dense = (x * keep) @ w
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # one bag per thread
    try:
        kept = keep.nonzero()[:, 0]
        if kept.numel():
            assert (sparse_matvec(x, w, kept) - dense).abs().max() <= 1e-4
        got = sparse_input_linear(x.view(1, 1, d_in), w, b, keep.view(1, 1, d_in))  # [1, 1, d_out]
        assert got.shape == (1, 1, d_out) and (got[0, 0] - (dense + b)).abs().max() <= 1e-4
    finally:
        torch.set_num_threads(previous)


def test_activation_fraction_keeps_exactly_that_share_per_token(hf_model):
    from anee_lite.core.masks import keep_inputs

    model = UnrolledModel(hf_model)
    acts = model(ids_for(), return_linear_inputs=True).activations
    for name, site in (("ln1.hook_normalized", 0), ("mlp.hook_post", 3)):
        x = acts[f"blocks.1.{name}"]  # [B, T, d_in]
        kept = keep_inputs(x, 1, site, 0.5).sum(-1)  # [B, T]
        assert bool((kept == x.shape[-1] - x.shape[-1] // 2).all())


def test_whole_kv_groups_masked_are_not_computed():
    """A group whose query heads are all off: no K/V in the cache; logits still equal HF surgery."""
    hf = random_llama(n_layers=3, d_model=48, n_heads=6, n_kv_heads=3, seed=4, attention_bias=True)
    surgery = copy.deepcopy(hf)
    model = UnrolledModel(hf)
    mask = torch.ones(3, 6)
    mask[0, 0:2] = 0  # group 0 of layer 0
    mask[1, 2:6] = 0  # groups 1 and 2 of layer 1
    mask[2, 3] = 0  # half of group 1 of layer 2: still computed
    for layer, head in (mask == 0).nonzero().tolist():
        scale_head_in_output_projection(surgery, layer, head, 0.0)
    ids = ids_for(2, 7)
    out = model(ids, head_mask=mask, use_cache=True, return_patterns=True)
    assert (out.logits - hf_logits(surgery, ids)).abs().max() <= TOL
    cache = out.past_key_values
    assert [cache.keys[l].shape[1] for l in range(3)] == [2, 1, 3]
    assert out.activations["blocks.1.attn.hook_pattern"][:, 2:].abs().max() == 0  # heads never computed
    cache_steps, steps = None, []
    for t in range(ids.shape[1]):
        step = model(ids[:, t:t + 1], head_mask=mask, past_key_values=cache_steps, use_cache=True,
                     exit_layers=torch.tensor([[1], [3]]))
        cache_steps, steps = step.past_key_values, steps + [step.logits]
    exits = torch.tensor([[1], [3]]).expand(2, ids.shape[1])
    full = model(ids, head_mask=mask, exit_layers=exits).logits
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL  # lazily propagated K/V for the kept groups only
    every_head = torch.zeros(3, 6)
    logits = model(ids, head_mask=every_head).logits  # no head anywhere: attention adds only its bias
    assert (logits - hf_logits(scale_all_heads(copy.deepcopy(hf)), ids)).abs().max() <= TOL


def scale_all_heads(hf):
    for layer in range(hf.config.num_hidden_layers):
        for head in range(hf.config.num_attention_heads):
            scale_head_in_output_projection(hf, layer, head, 0.0)
    return hf


def test_wrapper_call_accepts_masks():
    wrapper = ANEEWrapper(ANEEConfig(min_layers=0), hf_model=random_llama(n_layers=4))
    dims, ids = wrapper.model.dims, ids_for(1, 6)
    mask = torch.ones(dims.n_layers, dims.n_heads)
    mask[2, 1] = 0
    out = wrapper(ids, energy_budget=1.0, head_mask=mask, skip_layers=[0])
    assert torch.equal(out["logits"], wrapper.model(ids, head_mask=mask, skip_layers=[0]).logits)


def test_gradient_reaches_a_float_head_mask(hf_model):
    model = UnrolledModel(hf_model)
    mask = torch.ones(model.dims.n_layers, model.dims.n_heads, requires_grad=True)
    with torch.enable_grad():
        loss = model.forward_with_grad(ids_for(), head_mask=mask).logits.logsumexp(-1).mean()
        (grad,) = torch.autograd.grad(loss, mask)
    assert grad.shape == mask.shape and bool((grad != 0).any())


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    return UnrolledModel(random_llama(n_layers=3))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"head_mask": torch.ones(3, 5)}, ValueError, "head_mask must have shape \\[3, 4\\]"),
    ({"head_mask": torch.ones(3, 4, dtype=torch.long)}, TypeError, "head_mask must hold floats or bools"),
    ({"head_mask": [[1.0] * 4] * 3}, TypeError, "head_mask must be a torch.Tensor"),
    ({"head_mask": torch.full((3, 4), float("nan"))}, ValueError, "head_mask must be finite"),
    ({"mlp_mask": torch.ones(3, 7)}, ValueError, "mlp_mask must have shape \\[3, 136\\]"),
    ({"mlp_mask": torch.ones(3, 136, dtype=torch.int32)}, TypeError, "mlp_mask must hold floats or bools"),
    ({"mlp_mask": torch.full((3, 136), float("inf"))}, ValueError, "mlp_mask must be finite"),
    ({"skip_layers": [3]}, ValueError, "skip_layers must hold layer indices in \\[0, 2\\], got 3"),
    ({"skip_layers": [-1]}, ValueError, "skip_layers must hold layer indices"),
    ({"skip_layers": [1.0]}, TypeError, "skip_layers must hold integer"),
    ({"skip_layers": [True]}, TypeError, "skip_layers must hold integer"),
    ({"skip_layers": 1}, TypeError, "skip_layers must be an iterable"),
    ({"skip_layers": "01"}, TypeError, "skip_layers must be an iterable"),
    ({"activation_sparsity": 1.0}, ValueError, "activation_sparsity must be in \\[0, 1\\)"),
    ({"activation_sparsity": float("nan")}, ValueError, "activation_sparsity must be in"),
    ({"activation_sparsity": -0.1}, ValueError, "activation_sparsity must be in"),
    ({"activation_sparsity": "half"}, TypeError, "activation_sparsity must be a number"),
    ({"activation_sparsity": ActivationThresholds(0.5, torch.zeros(5, 4))}, ValueError, "thresholds are for 5 layers"),
])
def test_bad_masks_are_refused_naming_the_parameter(small, kwargs, error, match):
    with pytest.raises(error, match=match):
        small(ids_for(1, 3), **kwargs)


@settings(max_examples=12, deadline=None)
@given(rows=st.integers(0, 5), cols=st.integers(0, 6))
def test_any_wrong_head_mask_shape_is_refused(small, rows, cols):
    if (rows, cols) == (3, 4):
        return
    with pytest.raises(ValueError, match="head_mask must have shape"):
        small(ids_for(1, 2), head_mask=torch.ones(rows, cols))


@settings(max_examples=12, deadline=None)
@given(layers=st.lists(st.integers(-5, 10), min_size=1, max_size=4))
def test_skip_layers_out_of_range_refused_in_range_accepted(small, layers):
    if all(0 <= layer < 3 for layer in layers):
        small(ids_for(1, 2), skip_layers=layers)
    else:
        with pytest.raises(ValueError, match="skip_layers"):
            small(ids_for(1, 2), skip_layers=layers)


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="thresholds must be finite"):
        ActivationThresholds(0.5, torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="thresholds must be finite and >= 0"):
        ActivationThresholds(0.5, -torch.ones(2, 4))
    with pytest.raises(ValueError, match="fraction must be in"):
        ActivationThresholds(1.5, torch.zeros(2, 4))
    for shape in ((2,), (2, 3), (2, 4, 1)):  # one column per matrix, nothing else
        with pytest.raises(TypeError, match=r"\[n_layers, 4\]"):
            ActivationThresholds(0.5, torch.zeros(shape))


# --------------------------------------------------------------------------- SmolLM2


@pytest.mark.slow
def test_smollm2_masks_equal_weight_surgery(smollm2_hf):
    hf, _ = smollm2_hf
    surgery = copy.deepcopy(hf)
    model = UnrolledModel(hf)
    dims = model.dims
    head_mask = torch.ones(dims.n_layers, dims.n_heads)
    mlp_mask = torch.ones(dims.n_layers, dims.d_mlp)
    gen = torch.Generator().manual_seed(0)
    for layer in range(0, dims.n_layers, 3):
        head = int(torch.randint(dims.n_heads, (1,), generator=gen))
        head_mask[layer, head] = 0
        scale_head_in_output_projection(surgery, layer, head, 0.0)
        for neuron in torch.randperm(dims.d_mlp, generator=gen)[:300].tolist():
            mlp_mask[layer, neuron] = 0
            scale_neuron_in_down_projection(surgery, layer, neuron, 0.0)
    ids = torch.randint(0, dims.d_vocab, (1, 12), generator=gen)
    got = model(ids, head_mask=head_mask, mlp_mask=mlp_mask).logits
    assert (got - hf_logits(surgery, ids)).abs().max() <= 1e-3
    del surgery
    removed = remove_blocks(copy.deepcopy(hf), [3, 17, 28])
    assert (model(ids, skip_layers=[3, 17, 28]).logits - hf_logits(removed, ids)).abs().max() <= 1e-3
