"""The virtual accelerator: per-op decomposition against the cost model, roofline physics, plans, dispatch counts."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SMOLLM2_DIMS, random_gpt2, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.core.architectures import ModelDims, converter_for
from anee_lite.core.cache import catch_up_rows
from anee_lite.cost import token_cost
from anee_lite.cost.constants import BYTES_PER_WEIGHT, DTYPES
from anee_lite.cost.devices import PROFILES, DeviceProfile
from anee_lite.cost.simulator import (
    Op,
    Step,
    draft_verify_plan,
    model_weight_bytes,
    pass_ops,
    plan_from_generation,
    simulate_decode,
    simulate_plan,
    simulate_prefill,
    static_plan,
    time_op,
)

SMOLLM2 = SMOLLM2_DIMS
GPT2_SMALL = ModelDims("gpt2", 768, 12, 12, 64, 3072, 12, 50257, 1024)
TOY = DeviceProfile(name="toy", description="round numbers for hand checks",
                    peak_flops={"fp32": 1e9, "fp16": 2e9, "int8": 4e9}, memory_bandwidth=1e9, memory_bytes=1e12,
                    cache_bytes=1e6, op_overhead_s=1e-6, matmul_overhead_s=1e-5,
                    joules_per_flop={"fp32": 1e-12, "fp16": 5e-13, "int8": 1e-13}, joules_per_byte=1e-10,
                    idle_watts=2.0, compute_efficiency=1.0, bandwidth_efficiency=1.0)


@settings(max_examples=60, deadline=None)
@given(dims=st.sampled_from([SMOLLM2, GPT2_SMALL]), data=st.data())
def test_ops_sum_to_token_cost(dims, data):
    layers = data.draw(st.integers(0, dims.n_layers))
    context = data.draw(st.integers(1, 4096))
    charges = {"lens_checks": data.draw(st.integers(0, 3)), "probe_checks": data.draw(st.integers(0, 3)),
               "probe_macs_per_check": data.draw(st.integers(0, 5000)),
               "lens_translator_macs": data.draw(st.integers(0, 10**6)), "unembed": data.draw(st.booleans())}
    prop = data.draw(st.integers(0, 50))
    ops = pass_ops(dims, layers_run=layers, context_len=context, exit_charges=charges, kv_propagated=prop)
    cost = token_cost(dims, layers_run=layers, context_len=context, kv_propagated=prop, **charges)
    assert sum(o.flops for o in ops) == pytest.approx(cost.flops, rel=1e-12)
    assert sum(o.bytes for o in ops) == pytest.approx(cost.bytes_moved, rel=1e-12)


def test_ops_per_layer_by_hand():
    ops = {o.name: o for o in pass_ops(SMOLLM2, layers_run=1, context_len=10)}
    assert ops["layer0.q_proj"].flops == 2 * 576 * 576 and ops["layer0.q_proj"].bytes == 576 * 576 * 4
    assert ops["layer0.k_proj"].bytes == 576 * 192 * 4
    assert ops["layer0.mlp_down"].flops == 2 * 1536 * 576
    assert ops["layer0.attention"].flops == 2 * 2 * 576 * 10  # q.k and p.v over 10 keys
    assert ops["layer0.attention"].bytes == 2 * 192 * 10 * 4  # K and V read
    assert ops["lm_head"].bytes == 576 * 49152 * 4


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 64), tokens=st.integers(1, 64), dtype=st.sampled_from(DTYPES))
def test_batch_streams_weights_once(batch, tokens, dtype):
    one = {o.name: o for o in pass_ops(SMOLLM2, layers_run=2, context_len=100, dtype=dtype)}
    many = {o.name: o for o in pass_ops(SMOLLM2, layers_run=2, context_len=100, tokens=tokens, batch=batch,
                                        dtype=dtype)}
    up, up1 = many["layer1.mlp_up"], one["layer1.mlp_up"]
    assert up.bytes == up1.bytes == 576 * 1536 * BYTES_PER_WEIGHT[dtype]
    assert up.flops == batch * tokens * up1.flops
    assert many["layer0.attention"].bytes == batch * one["layer0.attention"].bytes


def test_prefill_attention_counts_the_causal_triangle():
    ops = {o.name: o for o in pass_ops(SMOLLM2, layers_run=1, context_len=4, tokens=4, unembedded=1)}
    assert ops["layer0.attention"].flops == 2 * 2 * 576 * (1 + 2 + 3 + 4)
    assert ops["lm_head"].flops == 2 * 576 * 49152  # only the last position is unembedded


def test_sparsity_scales_matrix_weights_only():
    full = {o.name: o for o in pass_ops(SMOLLM2, layers_run=1, context_len=50)}
    half = {o.name: o for o in pass_ops(SMOLLM2, layers_run=1, context_len=50, weight_fraction=0.5)}
    assert half["layer0.mlp_up"].bytes == full["layer0.mlp_up"].bytes / 2
    assert half["layer0.mlp_up"].flops == full["layer0.mlp_up"].flops / 2
    assert half["layer0.attention"] == full["layer0.attention"]


def test_time_op_by_hand():
    op = Op("x", "matmul", flops=2e6, bytes=4e6, dispatches=3, products=1)
    t = time_op(op, TOY, "fp32")
    assert t.memory_seconds == pytest.approx(4e-3) and t.compute_seconds == pytest.approx(2e-3)
    assert t.overhead_seconds == pytest.approx(3e-6 + 1e-5)
    assert t.seconds == pytest.approx(4e-3 + 1.3e-5) and t.bound == "memory"
    assert t.joules == pytest.approx(2e6 * 1e-12 + 4e6 * 1e-10 + 2.0 * t.seconds)
    fp16 = time_op(op, TOY, "fp16")
    assert fp16.compute_seconds == pytest.approx(1e-3)
    assert time_op(op, TOY, "int4").compute_seconds == pytest.approx(1e-3)  # int4 weights compute in fp16
    small = time_op(Op("y", "other", 10, 10, dispatches=5), TOY)
    assert small.bound == "overhead"


profiles = st.sampled_from(list(PROFILES.values()) + [TOY])
ops_strategy = st.builds(Op, name=st.just("op"), kind=st.sampled_from(["matmul", "attention", "norm", "other"]),
                         flops=st.floats(0, 1e15), bytes=st.floats(0, 1e12), dispatches=st.integers(0, 100),
                         products=st.integers(0, 10))


@settings(max_examples=300, deadline=None)
@given(op=ops_strategy, profile=profiles, dtype=st.sampled_from(DTYPES))
def test_no_device_beats_physics(op, profile, dtype):
    t = time_op(op, profile, dtype)
    compute_dtype = {"int4": "fp16"}.get(dtype, dtype)
    assert t.seconds >= op.bytes / profile.memory_bandwidth * (1 - 1e-12)
    assert t.seconds >= op.flops / profile.peak_flops[compute_dtype] * (1 - 1e-12)
    assert t.joules >= 0 and math.isfinite(t.seconds)


@settings(max_examples=60, deadline=None)
@given(profile=profiles, layers=st.integers(0, 30), context=st.integers(1, 8192), batch=st.integers(1, 256),
       dtype=st.sampled_from(DTYPES))
def test_whole_step_beats_no_physics(profile, layers, context, batch, dtype):
    r = simulate_decode(SMOLLM2, profile, layers=layers, context=context, batch=batch, dtype=dtype)
    compute_dtype = {"int4": "fp16"}.get(dtype, dtype)
    assert r.seconds >= r.bytes / profile.memory_bandwidth * (1 - 1e-12)
    assert r.seconds >= r.flops / profile.peak_flops[compute_dtype] * (1 - 1e-12)
    assert r.seconds_per_token == pytest.approx(r.seconds / batch)


LLAMA_7B = ModelDims("llama", 4096, 32, 32, 128, 11008, 32, 32000, 4096)


def test_bounds_decode_memory_prefill_compute_small_model_overhead():
    """A 7B model decodes memory-bound, prefills compute-bound; a 135M model on an H100 is launch-bound."""
    h100 = PROFILES["h100-sxm"]
    full = simulate_decode(LLAMA_7B, h100, layers=32, context=128, dtype="fp16", kernels="fused")
    half = simulate_decode(LLAMA_7B, h100, layers=16, context=128, dtype="fp16", kernels="fused")
    assert full.bound_shares()["memory"] > 0.9
    assert 0.5 < half.seconds / full.seconds < 0.55  # half the layers, the unembedding stays
    prefill = simulate_prefill(LLAMA_7B, h100, prompt_tokens=2048, batch=8, dtype="fp16", kernels="fused")
    assert prefill.bound_shares()["compute"] > 0.9
    small = simulate_decode(SMOLLM2, h100, context=128, kernels="fused")
    assert small.bound_shares()["overhead"] > 0.5


def test_devices_rank_as_their_bandwidth_in_memory_bound_decode():
    seconds = {n: simulate_decode(SMOLLM2, p, layers=30, context=64, dtype="fp16", kernels="fused").seconds
               for n, p in PROFILES.items()}
    assert seconds["h100-sxm"] < seconds["a100-40gb"] < seconds["t4"] < seconds["apple-m2"] \
        < seconds["raspberry-pi-5"]


def test_eager_dispatch_costs_several_times_one_kernel_per_op():
    eager = simulate_decode(SMOLLM2, PROFILES["h100-sxm"], context=64)
    fused = simulate_decode(SMOLLM2, PROFILES["h100-sxm"], context=64, kernels="fused")
    ops = sum(1 for _ in pass_ops(SMOLLM2, layers_run=30, context_len=64))
    dispatches = sum(o.dispatches for o in pass_ops(SMOLLM2, layers_run=30, context_len=64))
    overhead = {"eager": sum(o.overhead_seconds for o in eager.ops), "fused": sum(o.overhead_seconds for o in fused.ops)}
    assert overhead["eager"] / overhead["fused"] == pytest.approx(dispatches / ops)
    assert eager.seconds > 3 * fused.seconds


def test_static_and_draft_verify_plans():
    plan = static_plan(5, 10)
    r = simulate_plan(SMOLLM2, TOY, plan, context=7)
    assert r.tokens_emitted == 5 and r.steps == 5
    one = simulate_decode(SMOLLM2, TOY, layers=10, context=8)
    assert r.seconds > 5 * one.seconds * 0.99  # contexts 8..12: at least as long as five steps at 8
    dv = draft_verify_plan(30, draft_layers=8, draft_tokens=4, accepted=3, rounds=2)
    assert [s.layers for s in dv[:5]] == [8, 8, 8, 8, 30] and dv[4].tokens == 5 and dv[4].emitted == 4
    r = simulate_plan(SMOLLM2, TOY, dv, context=10)
    assert r.tokens_emitted == 8 and r.steps == 10
    with pytest.raises(ValueError, match="accepted"):
        draft_verify_plan(30, draft_layers=8, draft_tokens=4, accepted=5)
    with pytest.raises(ValueError, match="emits no token"):
        simulate_plan(SMOLLM2, TOY, [Step(layers=3, emitted=0)])


def test_plan_from_a_real_generation():
    model = UnrolledModel(random_llama())
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))
    result = greedy_generate(model, ids, max_new_tokens=5, exit_layers=2)
    plan = plan_from_generation(result)
    assert [s.layers for s in plan] == [2] * 4
    with_prefill = plan_from_generation(result, include_prefill=True)
    assert with_prefill[0].tokens == 6 and with_prefill[0].unembedded == 1
    r = simulate_plan(model.dims, TOY, plan, context=result.prompt_length)
    expected = sum(token_cost(model.dims, layers_run=2, context_len=result.prompt_length + i).bytes_moved
                   for i in range(1, 5))
    assert r.bytes == pytest.approx(expected)


def test_caught_up_rows_join_the_products_without_reading_the_weights_again():
    """A catch-up pass multiplies the lagging positions in the same products: their FLOPs as ``token_cost`` charges
    them (layers caught up), no extra weight bytes, and time between the lone pass and separate passes."""
    from dataclasses import replace

    caught = (0, 0, 2, 2, 1)  # two tokens lag from layer 2, one of them from layer 4 too: 5 (token, layer) blocks
    plain = pass_ops(SMOLLM2, layers_run=5, context_len=20)
    joint = pass_ops(SMOLLM2, layers_run=5, context_len=20, caught_up=caught)
    layer_matmuls = [o for o in joint if o.kind == "matmul" and o.name.startswith("layer")]
    cost = token_cost(SMOLLM2, layers_run=5, context_len=20, layers_caught_up=sum(caught))
    assert sum(o.flops for o in layer_matmuls) == 2 * (cost.qkv_o + cost.mlp)
    assert {o.name: o.rows for o in layer_matmuls if o.name.endswith("q_proj")} == {
        f"layer{l}.q_proj": 1 + c for l, c in enumerate(caught)}
    assert sum(o.bytes for o in joint) == sum(o.bytes for o in plain)  # weights and K/V read once for all of them
    slow_rows = replace(TOY, rows_efficiency=((1, 0.05), (16, 0.25), (256, 1.0)))  # a few-row product: arithmetic
    alone, together = (sum(time_op(o, slow_rows).seconds for o in ops) for ops in (plain, joint))
    apart = alone + 2 * sum(time_op(o, slow_rows).seconds for o in pass_ops(SMOLLM2, layers_run=3, context_len=20)[1:])
    assert alone < together < apart
    with pytest.raises(ValueError, match="caught_up has 6 entries"):
        pass_ops(SMOLLM2, layers_run=5, context_len=20, caught_up=caught + (1,))
    with pytest.raises(ValueError, match=r"caught_up\[1\]"):
        pass_ops(SMOLLM2, layers_run=5, context_len=20, caught_up=(0, -1))
    with pytest.raises(ValueError, match="context holds 2 positions"):
        pass_ops(SMOLLM2, layers_run=5, context_len=2, caught_up=caught)
    with pytest.raises(TypeError, match="caught_up must be a tuple"):
        pass_ops(SMOLLM2, layers_run=5, context_len=20, caught_up=3)


def test_a_few_row_product_pays_the_devices_slowdown_on_its_weight_reads():
    from dataclasses import replace

    cpu = replace(TOY, few_rows_slowdown=((2, 1.5),))
    one, two = (pass_ops(SMOLLM2, layers_run=1, context_len=8, tokens=t) for t in (1, 2))
    q1, q2 = (next(o for o in ops if o.name == "layer0.q_proj") for ops in (one, two))
    assert time_op(q2, cpu).memory_seconds == pytest.approx(1.5 * time_op(q1, cpu).memory_seconds)
    assert time_op(q2, TOY).memory_seconds == time_op(q1, TOY).memory_seconds  # no table: the same weight reads
    assert time_op(q1, cpu).seconds == time_op(q1, TOY).seconds  # one row: as before


def test_plan_from_a_catch_up_generation_prices_the_lagging_tokens():
    """Under catch-up every step's caught-up blocks are in the plan, so its FLOPs are the full model's with checks free."""
    model = UnrolledModel(random_llama(n_layers=4))
    n = model.dims.n_layers
    depths = iter([n, 1, 1, 3, 1, n, 2, n])  # the prompt pass, then seven decoding steps

    def controller(layer, resid, active):
        if layer == 1:
            controller.depth = next(depths)
        return torch.full_like(active, layer == controller.depth)

    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))
    result = greedy_generate(model, ids, max_new_tokens=8, controller=controller)
    plan = plan_from_generation(result)
    assert [s.layers for s in plan] == [1, 1, 3, 1, n, 2, n]
    assert [sum(s.caught_up) for s in plan] == result.kv_caught_up_per_step[1:] == [0, 0, 4, 0, 6, 0, 2]
    r = simulate_plan(model.dims, TOY, plan, context=result.prompt_length)
    static = simulate_plan(model.dims, TOY, static_plan(7, n), context=result.prompt_length)
    matmul_flops = [sum(o.flops for o in x.ops if o.kind == "matmul") for x in (r, static)]
    assert matmul_flops[0] == pytest.approx(matmul_flops[1])  # every layer ran for every token in the end
    assert r.bytes < static.bytes  # the layers nobody ran alone were read only once, with a later token's


@pytest.mark.parametrize("bad", [{"layers_run": 31}, {"context_len": 0}, {"batch": 0}, {"dtype": "fp8"},
                                 {"weight_fraction": 0.0}, {"weight_fraction": 1.5}, {"tokens": 5, "context_len": 4},
                                 {"kernels": "jit"}])
def test_bad_arguments_name_the_parameter(bad):
    args = {"layers_run": 3, "context_len": 10} | bad
    name = next(iter(bad)) if "tokens" not in bad else "context_len"
    with pytest.raises((ValueError, TypeError), match=name):
        pass_ops(SMOLLM2, **args)


def test_weight_bytes_and_fit():
    assert model_weight_bytes(SMOLLM2, "fp32") == pytest.approx(4 * (30 * (884736 + 2654208) + 576 * 49152)
                                                                + 4 * (30 * 2 * 576 + 576))
    r = simulate_decode(ModelDims("llama", 8192, 64, 8, 128, 28672, 80, 128256, 8192), PROFILES["t4"])
    assert not r.fits_in_memory  # a 70B model in fp32 does not fit 16 GB


@pytest.mark.parametrize("make,arch", [(lambda: random_llama(n_layers=4), "llama"), (lambda: random_gpt2(4), "gpt2")])
def test_eager_dispatch_table_matches_the_profiler(make, arch):
    """The dispatch counts charged per decoding step are what torch.profiler sees the forward + sampling call."""
    from torch.profiler import ProfilerActivity, profile

    model = UnrolledModel(make())
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0))

    def count(n_new):
        greedy_generate(model, ids, max_new_tokens=n_new)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            greedy_generate(model, ids, max_new_tokens=n_new)
        return sum(1 for e in prof.events() if e.cpu_parent is None)

    per_step = (count(3) - count(1)) / 2  # two decoding steps, the prefill cancelled out
    charged = sum(o.dispatches for o in pass_ops(model.dims, layers_run=model.dims.n_layers, context_len=10))
    assert charged == pytest.approx(per_step, rel=0.1), (charged, per_step, dict(converter_for(arch).eager_dispatches))


@pytest.mark.parametrize("make", [lambda: random_llama(n_layers=6), lambda: random_gpt2(6)], ids=["llama", "gpt2"])
def test_exit_checks_and_catch_up_dispatch_counts_match_the_profiler(make):
    """What deciding an exit and catching tokens up add to a decoding step's operator calls, as the simulator charges it."""
    from torch.profiler import ProfilerActivity, profile

    from anee_lite.adaptive.controllers import make_controller
    from anee_lite.adaptive.probe import ExitProbe
    from anee_lite.lens import LogitLens

    model = UnrolledModel(make())
    n, d = model.dims.n_layers, model.dims.d_model
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0))

    def calls(fn):
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        return sum(1 for e in prof.events() if e.cpu_parent is None)

    def per_step(**kw):  # two decoding steps, the prefill cancelled out
        return (calls(lambda: greedy_generate(model, ids, max_new_tokens=3, **kw))
                - calls(lambda: greedy_generate(model, ids, max_new_tokens=1, **kw))) / 2

    def charged(**kw):
        return sum(o.dispatches for o in pass_ops(model.dims, layers_run=n, context_len=10, **kw))

    plain = per_step()
    probe = ExitProbe({l: torch.randn(d + 1) for l in range(1, n)}, {l: torch.tensor(0.0) for l in range(1, n)}, "logit")
    for name, kw in (("learned", {"probe": probe}), ("confidence", {})):
        for allowed in ([3], [1, 2, 3, 4, 5]):
            controller = make_controller(name, LogitLens(model), 2.0, exit_layers_allowed=allowed, **kw)  # never exits
            extra = per_step(controller=controller, kv_fill="propagate") - plain
            assert extra == pytest.approx(charged(exit_charges=controller.charges(n)) - charged(), abs=2), (name, allowed)

    def step_with_lagging(depths):  # one full-depth step after tokens that stopped at ``depths``
        x = torch.randint(0, 50, (1, len(depths) + 1), generator=torch.Generator().manual_seed(1))
        cache = None
        for t, depth in enumerate(depths):
            cache = model.forward(x[:, t:t + 1], exit_layers=depth, past_key_values=cache, use_cache=True,
                                  kv_fill="catch_up").past_key_values
        return calls(lambda: model.forward(x[:, -1:], past_key_values=cache.fork(), use_cache=True, kv_fill="catch_up"))

    none = step_with_lagging([n, n, n])
    for depths in ([n, n, 1], [n, 2, 4], [n, 1, 1, 3]):  # a prompt token stays: starting at token 0 is cheaper
        caught_up = catch_up_rows([*depths, n])[-1]
        extra = charged(caught_up=caught_up) - charged()
        assert step_with_lagging(depths) - none == pytest.approx(extra, abs=2), (depths, caught_up)


def test_plans_past_the_context_window_are_refused():
    tiny = ModelDims("llama", 64, 4, 2, 16, 136, 3, 97, 16)
    simulate_decode(tiny, TOY, context=16)  # the last position the model has
    with pytest.raises(ValueError, match=r"context must be in \[1, 16\], got 17"):
        simulate_decode(tiny, TOY, context=17)
    with pytest.raises(ValueError, match="reaches 17 positions.*n_ctx=16"):
        simulate_plan(tiny, TOY, static_plan(5, 3), context=12)
    with pytest.raises(ValueError, match="n_ctx=16"):
        simulate_prefill(tiny, TOY, prompt_tokens=17)


def test_a_step_cannot_emit_more_tokens_than_it_runs():
    with pytest.raises(ValueError, match=r"Step.emitted must be in \[0, 1\], got 3"):
        simulate_plan(SMOLLM2, TOY, [Step(layers=3, tokens=1, emitted=3)])
    verify = Step(layers=30, tokens=5, emitted=5)  # every draft accepted plus the bonus token
    assert simulate_plan(SMOLLM2, TOY, [verify]).tokens_emitted == 5


def test_memory_check_counts_kv_cache_and_activations_by_hand():
    dims = ModelDims("llama", 64, 4, 2, 16, 128, 3, 100, 512)
    r = simulate_decode(dims, PROFILES["t4"], context=10, batch=2, dtype="fp16")
    assert r.kv_cache_bytes == 2 * 3 * 2 * 10 * 2 * 16 * 2  # K and V, layers, rows, positions, kv width, fp16
    rows = 2 * 1
    assert r.activation_bytes == (rows * (2 * 64 + 2 * 128) + 2 * 4 * 1 * 10) * 2 + rows * 100 * 4
    assert r.fits_in_memory
    huge = simulate_decode(SMOLLM2, PROFILES["t4"], batch=100_000_000, dtype="fp16")
    assert huge.weight_bytes < PROFILES["t4"].memory_bytes  # the weights alone would fit...
    assert not huge.fits_in_memory  # ...but a hundred million rows of KV cache do not


def test_decode_default_context_fits_a_short_model_and_bad_arguments_are_named_first():
    short = ModelDims("gpt2", 64, 4, 4, 16, 256, 2, 100, 64)  # a 64-token window: the default 128 cannot apply
    assert simulate_decode(short, PROFILES["t4"]).context == 63  # 64 keys attended, 63 already cached
    with pytest.raises(TypeError, match="profile"):
        simulate_decode(short, "t4")
    with pytest.raises(ValueError, match="batch"):
        simulate_decode(short, PROFILES["t4"], batch=0)
    with pytest.raises(ValueError, match="dtype"):
        simulate_decode(short, PROFILES["t4"], dtype="fp8")
    with pytest.raises(ValueError, match="context"):
        simulate_decode(short, PROFILES["t4"], context=65)


SHORT = ModelDims("gpt2", 64, 4, 4, 16, 256, 2, 100, 64)  # a 64-token window, below the default context
ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(-0.5, 1.5), st.sampled_from(
    ["fp16", "fp8", "eager", "fused", "t4", "", "1"]))


def first_bad_argument(args: dict) -> str | None:
    """simulate_decode's documented rules, written out, in the order it checks them."""
    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)

    rules = {
        "profile": isinstance(args["profile"], DeviceProfile),
        "layers": args["layers"] is None or (integer(args["layers"]) and 0 <= args["layers"] <= SHORT.n_layers),
        "context": args["context"] is None or (integer(args["context"]) and 1 <= args["context"] <= SHORT.n_ctx),
        "batch": integer(args["batch"]) and args["batch"] >= 1,
        "dtype": args["dtype"] in DTYPES,
        "weight_fraction": isinstance(args["weight_fraction"], (int, float)) and not isinstance(
            args["weight_fraction"], bool) and 0 < args["weight_fraction"] <= 1,
        "kernels": args["kernels"] in ("eager", "fused"),
    }
    return next((name for name, ok in rules.items() if not ok), None)


@settings(max_examples=150, deadline=None)
@given(profile=st.sampled_from([TOY, "t4", None]), layers=ANY, context=ANY, batch=ANY, dtype=ANY,
       weight_fraction=ANY, kernels=ANY)
def test_decode_names_its_first_bad_argument_whatever_the_others(profile, **kwargs):
    """No default or later check hides a bad argument: the first one (in signature order) is the one named."""
    bad = first_bad_argument({"profile": profile, **kwargs})
    try:
        result = simulate_decode(SHORT, profile, **kwargs)
    except (TypeError, ValueError) as exc:
        assert bad is not None and str(exc).startswith(bad), (bad, exc)
        return
    assert bad is None
    assert result.context + 1 == (kwargs["context"] or SHORT.n_ctx)  # default: the whole 64-token window
    assert result.ops and all(math.isfinite(o.seconds) for o in result.ops)


def test_decode_context_is_one_rule_for_the_library_and_the_cli():
    from anee_lite.cost.simulator import DEFAULT_DECODE_CONTEXT, decode_context

    assert decode_context(SMOLLM2) == DEFAULT_DECODE_CONTEXT < SMOLLM2.n_ctx
    assert decode_context(SHORT) == SHORT.n_ctx == 64 and decode_context(SHORT, 7) == 7
    with pytest.raises(ValueError, match=r"context must be in \[1, 64\], got 65"):
        decode_context(SHORT, 65)


def test_a_short_prompts_products_run_at_their_measured_share_of_the_peak():
    """A product over 16 rows at a measured share of 0.25 takes 4x the compute time; decode stays memory-bound."""
    from dataclasses import replace

    slow_rows = replace(TOY, rows_efficiency=((16, 0.25), (256, 1.0)))
    product = Op("p", "matmul", flops=2e9, bytes=1e3, dispatches=0, products=0, rows=16)
    assert time_op(product, slow_rows).compute_seconds == pytest.approx(8.0)  # 2e9 / (1e9 * 0.25)
    assert time_op(product, TOY).compute_seconds == pytest.approx(2.0)
    big = replace(product, rows=1024)
    assert time_op(big, slow_rows).compute_seconds == pytest.approx(2.0)
    prefill = [o for o in pass_ops(SMOLLM2, layers_run=2, context_len=64, tokens=64) if o.kind == "matmul"]
    assert {o.rows for o in prefill} == {64}
    assert simulate_prefill(SMOLLM2, slow_rows, prompt_tokens=64).seconds > simulate_prefill(
        SMOLLM2, TOY, prompt_tokens=64).seconds


def test_attention_runs_at_its_measured_share_and_only_attention():
    """attention_efficiency 0.25: an attention op's compute time is 4x, a product over many rows keeps its time."""
    from dataclasses import replace

    slow_attention = replace(TOY, attention_efficiency=0.25)
    attention = Op("a", "attention", flops=2e9, bytes=1e3, dispatches=0, products=0)
    product = Op("p", "matmul", flops=2e9, bytes=1e3, dispatches=0, products=0, rows=1024)
    assert time_op(attention, slow_attention).compute_seconds == pytest.approx(8.0)  # 2e9 / (1e9 * 0.25)
    assert time_op(attention, TOY).compute_seconds == pytest.approx(2.0)
    assert time_op(product, slow_attention).compute_seconds == time_op(product, TOY).compute_seconds
    # A long prompt's attention grows with its square: the slower kernel weighs more at 512 tokens than at 32.
    ratio = {T: simulate_prefill(SMOLLM2, slow_attention, prompt_tokens=T).seconds
             / simulate_prefill(SMOLLM2, TOY, prompt_tokens=T).seconds for T in (32, 512)}
    assert 1 < ratio[32] < ratio[512]
