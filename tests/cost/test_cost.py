"""The cost model against hand counts and against torch's own FLOP counter on the real forward."""

import pytest
import torch
from conftest import SMOLLM2_DIMS, VOCAB, random_gpt2, random_llama
from torch.utils.flop_counter import FlopCounterMode

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.core.architectures import ModelDims
from anee_lite.cost import (
    ENERGY_PER_BYTE_J,
    ENERGY_PER_FLOP_J,
    CostBreakdown,
    cost_fraction,
    decode_step_seconds,
    fit_step_time,
    full_token_cost,
    generation_report,
    layer_and_unembed_seconds,
    matmul_flops_and_bytes,
    matmul_seconds,
    norm_macs,
    step_products_seconds,
    token_cost,
)

TINY = ModelDims(architecture="llama", d_model=8, n_heads=2, n_kv_heads=1, d_head=4, d_mlp=16, n_layers=2,
                 d_vocab=10, n_ctx=32)
SMOLLM2 = SMOLLM2_DIMS


def test_tiny_config_by_hand():
    cost = token_cost(TINY, layers_run=2, context_len=3)
    # per layer: Q 8x8, K and V 8x4 each, O 8x8 -> 64 + 64 + 64 = 192; SwiGLU 3 x 8x16 = 384
    assert cost.qkv_o == 2 * 192
    assert cost.attn_scores == 2 * 2 * (2 * 4) * 3  # layers x (QK^T and PV) x (H x D) x keys
    assert cost.mlp == 2 * 384
    assert cost.norms == (2 * 2 + 1) * 2 * 8  # two per layer and the final one, 2 x d_model each
    assert cost.lm_head == 8 * 10
    assert cost.kv_propagation == cost.exit_checks == 0
    assert cost.macs == 384 + 96 + 768 + 80 + 80 == 1408
    assert cost.flops == 2816
    # bytes: per layer 192 + 384 + 16 weights + 2 x 4 x 3 cached K/V, then W_U and the final norm; 4 bytes each
    assert cost.bytes_moved == 4 * (2 * (592 + 24) + 80 + 8) == 5280
    assert cost.energy_joules() == pytest.approx(2816 * ENERGY_PER_FLOP_J + 5280 * ENERGY_PER_BYTE_J)


def test_tiny_config_extras_by_hand():
    base = token_cost(TINY, layers_run=2, context_len=3)
    cost = token_cost(TINY, layers_run=2, context_len=3, kv_propagated=3, lens_checks=2, probe_checks=1,
                      probe_macs_per_check=9)
    assert cost.kv_propagation == 3 * (16 + 8 * 8)  # norm + K and V projections, per entry
    assert cost.exit_checks == 2 * (16 + 80) + 9  # two lens checks (norm + W_U) and one probe evaluation
    assert cost.bytes_moved - base.bytes_moved == 4 * (3 * (8 + 8) + 2 * (80 + 8) + 9)
    translated = token_cost(TINY, layers_run=2, context_len=3, lens_checks=2, lens_translator_macs=2 * 64,
                            readout_translator_macs=64)
    assert translated.exit_checks == 2 * (16 + 80) + 3 * 64  # each translator is d_model x d_model
    no_unembed = token_cost(TINY, layers_run=2, context_len=3, unembed=False)
    assert no_unembed.lm_head == 0 and no_unembed.norms == 4 * 16


def test_energy_uses_the_documented_constants():
    assert ENERGY_PER_FLOP_J == pytest.approx(2.3e-12)  # (3.7 + 0.9) pJ per MAC, Horowitz ISSCC 2014
    assert 1.3e-9 / 8 <= ENERGY_PER_BYTE_J <= 2.6e-9 / 8
    cost = CostBreakdown(1, 0, 0, 0, 0, 0, 0, bytes_moved=10)
    assert cost.energy_joules(joules_per_flop=1.0, joules_per_byte=0.5) == 2 + 5


def test_breakdowns_add_and_sum():
    a = token_cost(TINY, layers_run=1, context_len=2)
    b = token_cost(TINY, layers_run=2, context_len=5, lens_checks=1)
    total = a + b
    assert total.macs == a.macs + b.macs and total.bytes_moved == a.bytes_moved + b.bytes_moved
    assert sum([a, b]) == total
    assert total.as_dict()["flops"] == total.flops
    assert (3 * a).macs == 3 * a.macs and a * 2 == a + a
    assert set(total.as_dict()) >= {"qkv_o", "attn_scores", "mlp", "norms", "lm_head", "kv_propagation",
                                    "exit_checks", "bytes_moved", "macs", "flops", "energy_joules"}


def test_cost_fraction():
    full = full_token_cost(TINY, context_len=4)
    assert cost_fraction(full, full) == 1.0
    half = token_cost(TINY, layers_run=1, context_len=4)
    assert 0.5 < cost_fraction(half, full) < 1.0  # the unembedding is paid either way
    with pytest.raises(ValueError, match="full"):
        cost_fraction(full, CostBreakdown(0, 0, 0, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("kwargs, match", [
    ({"layers_run": 3, "context_len": 1}, r"layers_run must be in \[0, 2\]"),
    ({"layers_run": -1, "context_len": 1}, "layers_run"),
    ({"layers_run": 1, "context_len": 0}, "context_len must be >= 1"),
    ({"layers_run": 1, "context_len": 1, "lens_checks": -1}, "lens_checks"),
    ({"layers_run": 1, "context_len": 1, "kv_propagated": -2}, "kv_propagated"),
])
def test_token_cost_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        token_cost(TINY, **kwargs)


def test_smollm2_lm_head_is_eight_layers():
    layer = token_cost(SMOLLM2, layers_run=1, context_len=1, unembed=False)
    # by hand: W_U is 576 x 49152; a layer's matrices are 576 x (576 + 2 x 192) + 576 x 576 + 3 x 576 x 1536
    assert (layer.qkv_o + layer.mlp) == 576 * (960 + 576 + 4608)
    assert full_token_cost(SMOLLM2, 1).lm_head / (layer.qkv_o + layer.mlp) == 49152 / 6144 == 8
    step = full_token_cost(SMOLLM2, context_len=64)
    assert 0.18 <= step.lm_head / step.macs <= 0.22  # ~a fifth of a short-context decoding step


# --- against torch.utils.flop_counter on the real forward -------------------------------------------------------


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops(cost: CostBreakdown, kv_propagated: int = 0, lens_checks: int = 0, dims=None) -> float:
    """What FlopCounterMode sees: matrix products only, so the norms charged by convention come off."""
    norms = cost.norms + (kv_propagated + lens_checks) * norm_macs(dims)
    return cost.flops - 2 * norms


def _models():
    return {"gpt2": random_gpt2(n_layer=4, n_positions=128), "llama": random_llama(n_layers=4)}


@pytest.fixture(params=["gpt2", "llama", "smollm2"])
def counted_model(request):
    if request.param == "smollm2":
        hf, _ = request.getfixturevalue("smollm2_hf")
        return UnrolledModel(hf)
    return UnrolledModel(_models()[request.param])


def prefill(model, n_tokens, seed=0):
    ids = torch.randint(0, min(VOCAB, model.dims.d_vocab), (1, n_tokens), generator=torch.Generator().manual_seed(seed))
    return model(ids, use_cache=True).past_key_values


@pytest.mark.parametrize("past, new", [(0, 5), (7, 1), (7, 3)])
def test_full_depth_flops_match_the_counter(counted_model, past, new):
    model, dims = counted_model, counted_model.dims
    cache = prefill(model, past) if past else None
    ids = torch.randint(0, VOCAB, (1, new), generator=torch.Generator().manual_seed(1))
    # return_patterns: the explicit attention matmuls are counted (CPU SDPA kernels are not)
    got = counted_flops(lambda: model(ids, past_key_values=cache, use_cache=True, return_patterns=True))
    # the forward computes every query against every key of the call and masks (no causal skipping)
    expected = new * full_token_cost(dims, context_len=past + new)
    assert got == matmul_flops(expected, dims=dims)


@pytest.mark.parametrize("layers", [1, 3])
def test_static_exit_flops_match_the_counter(counted_model, layers):
    model, dims = counted_model, counted_model.dims
    cache = prefill(model, 6, seed=2)
    ids = torch.randint(0, VOCAB, (1, 2), generator=torch.Generator().manual_seed(3))
    got = counted_flops(lambda: model(ids, exit_layers=layers, past_key_values=cache, use_cache=True,
                                      return_patterns=True, logits_to_keep=1))
    expected = 2 * token_cost(dims, layers_run=layers, context_len=8, unembed=False) + token_cost(
        dims, layers_run=0, context_len=1)  # logits_to_keep=1: one unembedding
    assert got == matmul_flops(expected, dims=dims)


def test_propagation_flops_match_the_counter(counted_model):
    model, dims = counted_model, counted_model.dims
    n = dims.n_layers
    cache = prefill(model, 4)
    cache = model(torch.tensor([[5]]), exit_layers=1, past_key_values=cache, use_cache=True).past_key_values
    got = counted_flops(lambda: model(torch.tensor([[6]]), past_key_values=cache, use_cache=True,
                                      return_patterns=True))
    expected = token_cost(dims, layers_run=n, context_len=6, kv_propagated=n - 1)  # token 4 caught up at n - 1 layers
    assert cache.propagated == n - 1
    assert got == matmul_flops(expected, kv_propagated=n - 1, dims=dims)


def test_lens_check_flops_match_the_counter(counted_model):
    model, dims = counted_model, counted_model.dims
    resid = torch.randn(1, 1, dims.d_model)
    got = counted_flops(lambda: model.logits_from_resid(resid))
    cost = token_cost(dims, layers_run=0, context_len=1, unembed=False, lens_checks=1)
    assert got == matmul_flops(cost, lens_checks=1, dims=dims)


# --- per-token report of a generation ---------------------------------------------------------------------------


def test_generation_report_static_exit():
    model = UnrolledModel(random_llama(n_layers=4))
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(0))
    result = greedy_generate(model, ids, max_new_tokens=4, exit_layers=2)
    rows = generation_report(result, model.dims)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert all(r["layers"] == 2 for r in rows)
    for r in rows:
        cost = token_cost(model.dims, layers_run=2, context_len=5 + r["step"])
        assert r["context_len"] == 5 + r["step"]
        assert r["flops"] == cost.flops
        assert r["flops_fraction"] == pytest.approx(cost.flops / full_token_cost(model.dims, 5 + r["step"]).flops)
        assert r["energy_joules"] == pytest.approx(cost.energy_joules())
        assert 0 < r["flops_fraction"] < 1
    assert [r["wall_seconds"] for r in rows] == result.step_times


def scripted_generation(kv_fill):
    """Two rows, 4 tokens: the prompt (step 0) and step 2 run every layer, steps 1 and 3 stop after 1 and 2."""
    model = UnrolledModel(random_gpt2(n_layer=4, n_positions=128))
    n = model.dims.n_layers
    ids = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(0))
    depths = iter([1, n, 2])  # decoding steps 1, 2, 3
    state = {}

    def controller(layer, resid, active):
        if layer == 1:
            state["depth"] = n if resid.shape[1] > 1 else next(depths)
        return torch.full_like(active, layer == state["depth"])

    return model, n, greedy_generate(model, ids, max_new_tokens=4, controller=controller, kv_fill=kv_fill)


def test_generation_report_charges_propagation():
    model, n, result = scripted_generation("propagate")
    rows = generation_report(result, model.dims)
    assert [r["layers"] for r in rows] == [n, n, 1, 1, n, n, 2, 2]
    assert [r["row"] for r in rows] == [0, 1] * 4
    assert result.kv_propagated_per_step == [0, 0, 2 * (n - 1), 0]  # step 2 fills step 1's token, both rows
    step2 = token_cost(model.dims, layers_run=n, context_len=7, kv_propagated=n - 1)
    assert rows[4]["flops"] == step2.flops


def test_layer_and_unembed_seconds_runs_and_checks_its_arguments():
    model = UnrolledModel(random_llama(n_layers=2))
    layer_s, unembed_s = layer_and_unembed_seconds(model, context_len=6, repeats=1)
    assert layer_s > 0 and unembed_s > 0  # no timing assertion: only that it measured something
    with pytest.raises(ValueError, match="context_len"):
        layer_and_unembed_seconds(model, context_len=1)
    with pytest.raises(ValueError, match="repeats"):
        layer_and_unembed_seconds(model, context_len=6, repeats=0)


def test_step_products_are_the_matrices_a_decoding_step_streams(monkeypatch):
    """One pass multiplies each layer's four matrices and then the unembedding, in order, with n_rows rows."""
    from anee_lite.cost import timing

    model = UnrolledModel(random_llama(n_layers=2))
    seen = []
    monkeypatch.setattr(timing, "linear", lambda x, w: seen.append((x.shape[0], w.data_ptr(), tuple(w.shape))))
    assert step_products_seconds(model, n_rows=3, repeats=2) > 0
    arch = model.arch
    step = [(3, w.data_ptr(), tuple(w.shape)) for b in arch.blocks for w in (b.W_QKV, b.W_O, b.W_mlp_in, b.W_out)]
    assert seen == (step + [(3, arch.W_U.data_ptr(), tuple(arch.W_U.shape))]) * 3  # warm-up + 2 timed passes
    seen.clear()
    step_products_seconds(model, n_rows=3, repeats=1, unembed=False)
    assert seen == step * 2  # a caught-up token needs no logits
    for bad, match in (({"n_rows": 0}, "n_rows"), ({"repeats": 0}, "repeats"), ({"unembed": 1}, "unembed")):
        with pytest.raises((ValueError, TypeError), match=match):
            step_products_seconds(model, **bad)


def test_memory_bound_speculative_costs_follow_the_bytes():
    from anee_lite.cost import memory_bound_costs

    dims = UnrolledModel(random_llama(n_layers=4)).dims
    full = full_token_cost(dims, 16).bytes_moved
    for layers in (1, 2, 3):
        c, v = memory_bound_costs(dims, layers, 16)
        assert c == pytest.approx(token_cost(dims, layers_run=layers, context_len=16).bytes_moved / full)
        assert v == 1.0
    assert memory_bound_costs(dims, 1, 16)[0] < memory_bound_costs(dims, 3, 16)[0] < 1
    with pytest.raises(ValueError, match="draft_layers"):
        memory_bound_costs(dims, 4)


def test_decode_step_seconds_times_every_depth_and_checks_its_arguments():
    model = UnrolledModel(random_llama(n_layers=3))
    ids = torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(0))
    steps, unembed_s = decode_step_seconds(model, ids, [1, 3], new_tokens=2, rounds=2)
    assert sorted(steps) == [1, 3] and all(s > 0 for s in steps.values()) and unembed_s > 0
    with pytest.raises(ValueError, match="depths"):
        decode_step_seconds(model, ids, [0, 3])
    with pytest.raises(ValueError, match="depths"):
        decode_step_seconds(model, ids, [])
    with pytest.raises(ValueError, match="new_tokens"):
        decode_step_seconds(model, ids, [1], new_tokens=1)


def test_fit_step_time_recovers_a_line_and_refuses_one_depth():
    fixed, per_layer = fit_step_time([4, 8, 16], [0.010 + 0.002 * L for L in (4, 8, 16)])
    assert fixed == pytest.approx(0.010) and per_layer == pytest.approx(0.002)
    with pytest.raises(ValueError, match="two or more"):
        fit_step_time([8, 8], [0.1, 0.2])
    with pytest.raises(ValueError, match="two or more"):
        fit_step_time([8], [0.1])


def test_matmul_flops_and_bytes_by_hand():
    flops, bytes_moved = matmul_flops_and_bytes(1, 3, 5)
    assert flops == 2 * 3 * 5 and bytes_moved == 4 * (15 + 3 + 5)
    flops_64, bytes_64 = matmul_flops_and_bytes(64, 3, 5)
    assert flops_64 == 64 * flops and bytes_64 == 4 * (15 + 64 * 8)
    assert matmul_seconds(2, torch.randn(3, 5), repeats=1) > 0
    with pytest.raises(ValueError, match="n_rows"):
        matmul_flops_and_bytes(0, 3, 5)


def test_catch_up_flops_match_the_counter(counted_model):
    """A full-depth token after an exit runs the exited token's skipped layers too, each at that token's context."""
    model, dims = counted_model, counted_model.dims
    n = dims.n_layers
    cache = model(torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(0)), use_cache=True,
                  kv_fill="catch_up").past_key_values
    cache = model(torch.tensor([[5]]), exit_layers=1, past_key_values=cache, use_cache=True,
                  kv_fill="catch_up").past_key_values
    got = counted_flops(lambda: model(torch.tensor([[6]]), past_key_values=cache, use_cache=True, kv_fill="catch_up"))
    expected = (token_cost(dims, layers_run=n, context_len=6)
                + token_cost(dims, layers_run=0, context_len=5, layers_caught_up=n - 1, unembed=False))
    assert cache.caught_up == n - 1
    # catch-up takes no return_patterns, and the counter does not see the fused attention kernel: products only
    assert got == matmul_flops(expected, dims=dims) - 2 * expected.attn_scores


def test_generation_report_charges_catch_up():
    model, n, result = scripted_generation("catch_up")
    rows = generation_report(result, model.dims)
    assert result.kv_caught_up_per_step == [0, 0, 2 * (n - 1), 0] and result.kv_propagated == 0
    step2 = token_cost(model.dims, layers_run=n, context_len=7, layers_caught_up=n - 1)
    assert rows[4]["flops"] == step2.flops
