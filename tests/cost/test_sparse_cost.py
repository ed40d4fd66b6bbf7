"""Charges of pruned and activation-sparse decoding, by hand and against torch's FLOP counter."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from test_cost import SMOLLM2, TINY, counted_flops, matmul_flops

from anee_lite import UnrolledModel
from anee_lite.cost import BYTES_PER_PARAM, bytes_fraction, full_token_cost, sparse_token_cost, token_cost
from anee_lite.sparsity import calibrate_activation_thresholds, prune


def test_no_sparsity_costs_the_full_model():
    assert sparse_token_cost(TINY, context_len=5) == full_token_cost(TINY, context_len=5)


def test_tiny_sparse_charges_by_hand():
    # one layer skipped, one query head and its kv group... TINY has H=2, K=1: keep 1 head, the group, 8 neurons
    cost = sparse_token_cost(TINY, context_len=3, skipped_layers=1, n_heads=1, d_mlp=8,
                             kept_inputs=(0.5, 0.25, 0.5, 0.25))
    # W_QKV: Q 8x4, K and V 8x4 each = 96, half its input rows: 48; W_O 4x8 = 32, a quarter: 8
    assert cost.qkv_o == 48 + 8
    # W_mlp_in: gate and up 2 x 8x8 = 128, half: 64; W_out 8x8 = 64, a quarter: 16
    assert cost.mlp == 64 + 16
    assert cost.attn_scores == 2 * 4 * 3
    assert cost.norms == (2 + 1) * 16
    full_layer_bytes = (128 + 3 * 8 * 8 + 16 + 2 * 4 * 3) * BYTES_PER_PARAM
    unread = (96 - 48) + (32 - 8) + (128 - 64) + (64 - 16)
    assert cost.bytes_moved == full_layer_bytes - unread * BYTES_PER_PARAM + (80 + 8) * BYTES_PER_PARAM
    same = sparse_token_cost(TINY, context_len=3, skipped_layers=1, n_heads=1, d_mlp=8, kept_inputs=0.5)
    assert same.qkv_o == 0.5 * 128 and same.mlp == 0.5 * 192  # one number: every matrix keeps that share


def test_bytes_fraction_of_smollm2_neuron_pruning():
    full = full_token_cost(SMOLLM2, context_len=64)
    pruned = sparse_token_cost(SMOLLM2, context_len=64, d_mlp=int(0.7 * 1536))
    # 30% of 3 x 576 x 1536 per layer: 30 x 0.3 x 2.65M params out of ~134M streamed
    assert bytes_fraction(pruned, full) == pytest.approx(1 - 30 * 0.3 * 3 * 576 * 1536 / (full.bytes_moved / 4),
                                                         rel=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    ({"skipped_layers": 3}, "skipped_layers"),
    ({"n_heads": 3}, "n_heads"),
    ({"d_mlp": -1}, "d_mlp"),
    ({"kept_inputs": 1.5}, "kept_inputs"),
    ({"kept_inputs": (0.5, 0.5)}, "kept_inputs"),
    ({"kept_inputs": (0.5, 0.5, 0.5, -0.1)}, "kept_inputs"),
])
def test_bad_sparse_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparse_token_cost(TINY, context_len=2, **kwargs)


@pytest.mark.parametrize("kept", ["0.4", True, float("nan"), [0.4, "a", 0.4, 0.4], {0.4}])
def test_kept_inputs_must_be_numbers(kept):
    with pytest.raises((TypeError, ValueError), match="kept_inputs"):
        sparse_token_cost(TINY, context_len=2, kept_inputs=kept)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_pruned_model_decoding_flops_match_the_counter(name):
    hf = random_gpt2(n_layer=4, n_positions=128) if name == "gpt2" else random_llama(n_layers=4, n_heads=4,
                                                                                  n_kv_heads=2)
    dims = UnrolledModel(hf).dims
    head_mask = None if name == "gpt2" else torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 4)  # 1 head, 1 group per layer
    mlp_mask = torch.zeros(4, dims.d_mlp)
    mlp_mask[:, : dims.d_mlp // 2] = 1
    small = UnrolledModel(prune(hf, skip_layers=[2], head_mask=head_mask, mlp_mask=mlp_mask))
    cache = small(torch.randint(0, VOCAB, (1, 6)), use_cache=True).past_key_values
    got = counted_flops(lambda: small(torch.tensor([[3]]), past_key_values=cache, use_cache=True,
                                      return_patterns=True))
    kept = {} if head_mask is None else {"n_heads": 1, "n_kv_heads": 1}
    expected = sparse_token_cost(dims, context_len=7, skipped_layers=1, d_mlp=dims.d_mlp // 2, **kept)
    assert got == matmul_flops(expected, dims=dims)


def _embedding_bag_flops(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:
    """A multiply-add per kept row and output column: what reading only the kept rows computes."""
    return 2 * indices_shape[0] * weight_shape[1]


def counted_flops_with_rows(fn) -> int:
    """FlopCounterMode's matrix products plus the rows that embedding_bag multiplies (torch does not count it)."""
    from torch.utils.flop_counter import FlopCounterMode

    ops = {torch.ops.aten._embedding_bag_forward_only: _embedding_bag_flops,
           torch.ops.aten._embedding_bag: _embedding_bag_flops}
    with FlopCounterMode(display=False, custom_mapping=ops) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_activation_sparse_decoding_flops_match_the_counter(name):
    from anee_lite.core.masks import LINEAR_INPUT_HOOKS, ROW_SKIP_MIN_SPARSITY, keep_inputs

    hf = random_gpt2(n_layer=3, n_positions=128) if name == "gpt2" else random_llama(n_layers=3)
    model = UnrolledModel(hf)
    dims = model.dims
    prompt = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    # above every matrix's ROW_SKIP_MIN_SPARSITY, so each product reads only its kept rows (below it the
    # forward multiplies a masked input densely: a speed choice the device-free cost model does not make)
    assert 0.75 >= max(ROW_SKIP_MIN_SPARSITY.values())
    spec = calibrate_activation_thresholds(model, prompt, 0.75)
    cache = model(prompt, activation_sparsity=spec, use_cache=True).past_key_values
    step = torch.tensor([[7]])
    acts = model(step, activation_sparsity=spec, past_key_values=cache.fork(), use_cache=True,
                 return_linear_inputs=True).activations
    kept = [sum(keep_inputs(acts[f"blocks.{l}.{hook}"], l, site, spec).float().mean().item()
                for l in range(dims.n_layers)) / dims.n_layers for site, hook in enumerate(LINEAR_INPUT_HOOKS)]
    got = counted_flops_with_rows(lambda: model(step, activation_sparsity=spec, past_key_values=cache,
                                                use_cache=True, return_patterns=True))
    expected = sparse_token_cost(dims, context_len=21, kept_inputs=tuple(kept))
    assert got == pytest.approx(matmul_flops(expected, dims=dims))
    assert got < 0.5 * matmul_flops(token_cost(dims, layers_run=dims.n_layers, context_len=21), dims=dims)


