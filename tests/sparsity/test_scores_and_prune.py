"""Importance scores against their definitions, and pruned models against the masked forward."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import VOCAB, random_gpt2, random_llama

from anee_lite import UnrolledModel
from anee_lite.core.metrics import next_token_nll
from anee_lite.sparsity import (
    block_influence,
    calibrate_activation_thresholds,
    head_importance,
    head_mask_from_scores,
    layers_to_skip,
    mlp_mask_from_scores,
    neuron_importance,
    prune,
)

MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=4),
    "llama-gqa-bias": lambda: random_llama(n_layers=4, n_heads=4, n_kv_heads=2, attention_bias=True, mlp_bias=True),
    "llama-mha": lambda: random_llama(n_layers=3, n_heads=4, n_kv_heads=4, seed=1),
}


@pytest.fixture(params=sorted(MODELS))
def hf_model(request):
    return MODELS[request.param]()


def ids_for(batch=2, tokens=16, seed=0):
    return torch.randint(0, VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def test_block_influence_is_one_minus_cosine_by_hand(hf_model):
    model, ids = UnrolledModel(hf_model), ids_for()
    hidden = hf_model(ids, output_hidden_states=True, use_cache=False).hidden_states  # HF: input of each block
    scores = block_influence(model, ids)
    for layer in range(model.dims.n_layers - 1):  # HF's last hidden state has the final norm applied
        cos = F.cosine_similarity(hidden[layer], hidden[layer + 1], dim=-1).mean()
        assert scores[layer].item() == pytest.approx(1 - cos.item(), abs=1e-5)


def test_head_importance_equals_finite_differences(hf_model):
    """|dL/dxi| by autograd equals a finite difference of the loss in the head's gate."""
    model, ids = UnrolledModel(hf_model), ids_for(1, 12)
    dims = model.dims
    scores = head_importance(model, ids, chunk=12, normalize=False)
    assert scores.shape == (dims.n_layers, dims.n_heads)

    def loss(mask):
        return next_token_nll(model(ids, head_mask=mask).logits.double(), ids).mean().item()

    eps = 1e-2
    for layer, head in [(0, 0), (dims.n_layers - 1, dims.n_heads - 1)]:
        up, down = torch.ones(dims.n_layers, dims.n_heads), torch.ones(dims.n_layers, dims.n_heads)
        up[layer, head] += eps
        down[layer, head] -= eps
        assert scores[layer, head].item() == pytest.approx(abs(loss(up) - loss(down)) / (2 * eps), rel=2e-2,
                                                           abs=1e-5)
    normed = head_importance(model, ids, chunk=12)
    assert torch.allclose(normed.norm(dim=-1), torch.ones(dims.n_layers), atol=1e-5)


def test_neuron_importance_is_activation_norm_times_row_norm(hf_model):
    model, ids = UnrolledModel(hf_model), ids_for()
    scores = neuron_importance(model, ids)
    acts = model(ids, return_mlp_hidden=True).activations
    for layer in (0, model.dims.n_layers - 1):
        if hf_model.config.model_type == "gpt2":
            w_out = hf_model.transformer.h[layer].mlp.c_proj.weight  # Conv1D [d_mlp, d]
        else:
            w_out = hf_model.model.layers[layer].mlp.down_proj.weight.t()  # [d, d_mlp] -> [d_mlp, d]
        expected = acts[f"blocks.{layer}.mlp.hook_post"].flatten(0, 1).norm(dim=0) * w_out.norm(dim=-1)
        assert torch.allclose(scores[layer], expected, rtol=1e-4, atol=1e-6)


def test_selection_drops_the_lowest_scores():
    assert layers_to_skip(torch.tensor([0.1, 0.5, 0.05, 0.3, 0.2]), 2) == [2, 4]  # layer 0 kept
    assert layers_to_skip(torch.tensor([0.1, 0.5, 0.05, 0.3]), 2, keep_first=False) == [0, 2]
    dims = UnrolledModel(random_llama(n_layers=2, n_heads=4, n_kv_heads=2)).dims
    mask = head_mask_from_scores(torch.tensor([[0.1, 0.9, 0.5, 0.2], [1.0, 0.0, 0.0, 1.0]]), dims, 1)
    assert mask.tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]  # the best head of each kv group
    mlp = mlp_mask_from_scores(torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]]), 0.5)
    assert mlp.tolist() == [[1, 0, 1, 0], [0, 0, 1, 1]]
    with pytest.raises(ValueError, match="heads_per_group"):
        head_mask_from_scores(torch.ones(2, 4), dims, 3)
    with pytest.raises(ValueError, match="fraction_removed"):
        mlp_mask_from_scores(torch.ones(2, 4), 1.5)


def test_pruned_model_equals_the_masked_forward_and_is_smaller(hf_model):
    original = copy.deepcopy(hf_model.state_dict())
    model, ids = UnrolledModel(hf_model), ids_for()
    dims = model.dims
    skip = layers_to_skip(block_influence(model, ids), 1)
    head_mask = None
    if dims.architecture == "llama":
        head_mask = head_mask_from_scores(head_importance(model, ids, chunk=8), dims,
                                          max(1, dims.n_heads // dims.n_kv_heads // 2))
        if dims.n_kv_heads == dims.n_heads:  # MHA: every head is its own group, drop whole groups instead
            head_mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * dims.n_layers)
    mlp_mask = mlp_mask_from_scores(neuron_importance(model, ids), 0.3)
    pruned = prune(hf_model, skip_layers=skip, head_mask=head_mask, mlp_mask=mlp_mask)
    small = UnrolledModel(pruned)
    masked = model(ids, skip_layers=skip, head_mask=head_mask, mlp_mask=mlp_mask).logits
    assert (small(ids).logits - masked).abs().max() <= 1e-4
    with torch.no_grad():
        assert (pruned(ids, use_cache=False).logits - masked).abs().max() <= 1e-4  # HF runs it too
    assert small.dims.n_layers == dims.n_layers - 1
    assert small.dims.d_mlp == dims.d_mlp - round(0.3 * dims.d_mlp)
    n_params = sum(p.numel() for p in pruned.parameters())
    assert n_params < sum(p.numel() for p in hf_model.parameters())
    for key, value in hf_model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, original[key])


def test_prune_refuses_what_cannot_be_sliced():
    hf = random_llama(n_layers=2, n_heads=4, n_kv_heads=2)
    uneven = torch.ones(2, 136)
    uneven[0, :3] = 0
    with pytest.raises(ValueError, match="same count in every layer"):
        prune(hf, mlp_mask=uneven)
    with pytest.raises(ValueError, match="only 0 and 1"):
        prune(hf, mlp_mask=torch.full((2, 136), 0.5))
    with pytest.raises(ValueError, match="every kept key/value group"):
        prune(hf, head_mask=torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="every layer"):
        prune(hf, skip_layers=[0, 1])
    with pytest.raises(ValueError, match="Llama-family"):
        prune(random_gpt2(n_layer=2), head_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="skip_layers"):
        prune(hf, skip_layers=[5])


def test_calibrated_thresholds_hit_the_fraction_on_their_text(hf_model):
    from anee_lite.core.masks import LINEAR_INPUT_HOOKS, keep_inputs

    model, ids = UnrolledModel(hf_model), ids_for(2, 24)
    dims = model.dims
    mlp_mask = torch.ones(dims.n_layers, dims.d_mlp)
    mlp_mask[:, ::4] = 0  # removed neurons are always zero: the fraction is of the neurons that run
    for fraction in (0.3, 0.5):
        spec = calibrate_activation_thresholds(model, ids, fraction, mlp_mask=mlp_mask)
        acts = model(ids, return_linear_inputs=True, mlp_mask=mlp_mask).activations
        for layer in range(dims.n_layers):
            for site, hook in enumerate(LINEAR_INPUT_HOOKS):
                x = acts[f"blocks.{layer}.{hook}"]
                if site == 3:
                    x = x[..., mlp_mask[layer] != 0]
                zeroed = 1 - keep_inputs(x, layer, site, spec).float().mean().item()
                assert zeroed == pytest.approx(fraction, abs=0.03), (layer, hook)
    with pytest.raises(ValueError, match="fraction"):
        calibrate_activation_thresholds(model, ids, 1.0)


def test_thresholds_read_off_the_quantile_table():
    from anee_lite.sparsity.calibrate import thresholds_from_quantiles

    table = torch.linspace(0, 1, 101)[:, None, None].expand(101, 2, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    got = thresholds_from_quantiles(table, 0.255)  # between the 25% and 26% levels
    assert torch.allclose(got.thresholds, 0.255 * torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(2, 4))
    assert got.fraction == 0.255
    assert torch.equal(thresholds_from_quantiles(table, 0.0).thresholds, torch.zeros(2, 4))
    for bad, error in ((1.0, ValueError), (-0.1, ValueError), ("0.5", TypeError), (float("nan"), ValueError)):
        with pytest.raises(error, match="fraction"):
            thresholds_from_quantiles(table, bad)
    with pytest.raises(ValueError, match="quantiles"):
        thresholds_from_quantiles(table[:, :, :3], 0.5)


def test_mask_cost_equals_the_uniform_charges_and_counts_kv_groups():
    from anee_lite.cost import full_token_cost, sparse_token_cost
    from anee_lite.sparsity.evaluate import mask_cost

    dims = UnrolledModel(random_llama(n_layers=3, n_heads=4, n_kv_heads=2)).dims
    full = full_token_cost(dims, 10)
    head_mask = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3)  # one head, so one kv group, per layer
    mlp_mask = mlp_mask_from_scores(torch.rand(3, dims.d_mlp), 0.5)
    got = mask_cost(dims, context_len=10, skip_layers=[1], head_mask=head_mask, mlp_mask=mlp_mask,
                    activation_sparsity=0.5)
    uniform = sparse_token_cost(dims, context_len=10, skipped_layers=1, n_heads=1, n_kv_heads=1,
                                d_mlp=dims.d_mlp // 2, kept_inputs=0.5)
    assert got["flops_fraction"] == pytest.approx(uniform.flops / full.flops)
    assert got["bytes_fraction"] == pytest.approx(uniform.bytes_moved / full.bytes_moved)
    assert mask_cost(dims, context_len=10)["flops_fraction"] == pytest.approx(1.0)


@pytest.mark.parametrize("score", [block_influence, head_importance, neuron_importance])
@pytest.mark.parametrize("ids,error,match", [
    ([[1, 2, 3]], TypeError, "input_ids"),  # was a ValueError for a wrong type
    (torch.tensor([[1, VOCAB]]), ValueError, r"input_ids must be token ids in \[0, "),
    (torch.tensor([[1]]), ValueError, "at least 2 tokens"),
])
def test_scores_check_input_ids_with_the_shared_helper(score, ids, error, match):
    with pytest.raises(error, match=match):
        score(UnrolledModel(random_llama(n_layers=2)), ids)


@pytest.mark.parametrize("call,error,match", [
    (lambda d: layers_to_skip(torch.tensor([0.1, float("nan"), 0.3]), 1), ValueError, "influence holds NaN"),
    (lambda d: layers_to_skip([0.1, 0.2, 0.3], 1), TypeError, r"influence must be a real tensor \[n_layers\]"),
    (lambda d: layers_to_skip(torch.ones(3, 1), 1), ValueError, r"influence must have shape \[n_layers\]"),
    (lambda d: layers_to_skip(torch.ones(3), 1, keep_first="yes"), TypeError, "keep_first"),
    (lambda d: head_mask_from_scores(torch.ones(2, 2), d, 1), ValueError, r"scores must have shape \[4, 4\]"),
    (lambda d: head_mask_from_scores(torch.ones(4, 4, dtype=torch.bool), d, 1), TypeError, "scores must be a real"),
    (lambda d: mlp_mask_from_scores(torch.ones(4), 0.5), ValueError, r"scores must have shape \[n_layers, width\]"),
    (lambda d: mlp_mask_from_scores(torch.full((4, 8), float("nan")), 0.5), ValueError, "NaN"),
    (lambda d: mlp_mask_from_scores(torch.ones(4, 8), "0.5"), TypeError, "fraction_removed"),
    (lambda d: mlp_mask_from_scores(torch.ones(4, 8), 1.5), ValueError, "fraction_removed"),
    (lambda d: prune("gpt2", skip_layers=[1]), TypeError, "hf_model must be a HuggingFace"),
])
def test_selection_and_prune_refuse_what_they_cannot_use(call, error, match):
    dims = UnrolledModel(random_llama(n_layers=4, n_heads=4, n_kv_heads=2)).dims
    with pytest.raises(error, match=match):
        call(dims)


def test_head_mask_from_transposed_scores_equals_the_contiguous_one():
    dims = UnrolledModel(random_llama(n_layers=4, n_heads=4, n_kv_heads=2)).dims
    scores = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    transposed = scores.t().contiguous().t()  # same values, non-contiguous memory
    assert torch.equal(head_mask_from_scores(transposed, dims, 1), head_mask_from_scores(scores, dims, 1))
