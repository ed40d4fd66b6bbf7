"""Notebook 06's exercise checks: the right answer passes, plausible wrong ones get a hint, nothing leaks the answer."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_gpt2, random_llama

from anee_lite import UnrolledModel
from anee_lite.notebook.exercises import ExerciseError, check_block_influence, check_head_ablation, check_sparse_matvec


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    # Grouped-query Llama (3 query heads per key/value head, as in SmolLM2) and GPT-2 (one per head).
    hf = random_llama(n_layers=4, d_model=48, n_heads=6, n_kv_heads=2) if request.param == "llama" \
        else random_gpt2(n_layer=3)
    return UnrolledModel(hf)


# --- Block Influence ----------------------------------------------------------------------------------------


def right_block_influence(pre, post):
    return 1 - F.cosine_similarity(pre, post, dim=-1).mean()


def test_block_influence_right(model, capsys):
    check_block_influence(right_block_influence, model)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong,match", [
    (lambda pre, post: F.cosine_similarity(pre, post, dim=-1).mean(), "1 minus"),
    (lambda pre, post: 1 - F.cosine_similarity(pre.mean(1), post.mean(1), dim=-1).mean(), "averaged the residual"),
    (lambda pre, post: 1 - F.cosine_similarity(pre[0], post[0], dim=-1).mean(), "first sequence"),
    (lambda pre, post: 1 - F.cosine_similarity(pre, post, dim=1).mean(), "dim=-1"),
    (lambda pre, post: (post - pre).norm(dim=-1).mean(), "wrong value"),
])
def test_block_influence_wrong(model, wrong, match, capsys):
    with pytest.raises(ExerciseError, match=match) as info:
        check_block_influence(wrong, model)
    assert "correct" not in capsys.readouterr().out
    assert_no_expected_value(str(info.value), model)


def assert_no_expected_value(message: str, model):
    """No Block Influence the check compared with appears in its message (at the precisions it prints)."""
    from anee_lite.notebook.exercises.sparsity import _random_ids
    from anee_lite.sparsity import block_influence

    for value in block_influence(model, _random_ids(model, (2, 12), seed=6)).tolist():
        for digits in (3, 4, 5):
            assert f"{value:.{digits}f}" not in message


# --- head ablation ------------------------------------------------------------------------------------------


def surgery(rows_of):
    """A head ablation that zeroes ``rows_of(model, layer, head)`` of a weight, runs, and restores it."""

    def ablate(model, ids, layer, head):
        weight, index = rows_of(model, layer, head)
        saved = weight.clone()
        try:
            weight[index] = 0
            return model(ids).logits
        finally:
            weight.copy_(saved)

    return ablate


def d_head_slice(model, head):
    D = model.dims.d_head
    return slice(head * D, (head + 1) * D)


right_head_ablation = surgery(lambda m, layer, h: (m.arch.blocks[layer].W_O, d_head_slice(m, h)))


def test_head_ablation_right(model, capsys):
    before = [b.W_O.clone() for b in model.arch.blocks]
    check_head_ablation(right_head_ablation, model)
    assert "correct" in capsys.readouterr().out
    assert all(torch.equal(w, b.W_O) for w, b in zip(before, model.arch.blocks))
    # The forward's own mask is of course also right (the check cannot tell how the logits were made).
    check_head_ablation(lambda m, ids, layer, h: m(ids, head_mask=_one_off(m, layer, h)).logits, model)


def _one_off(model, layer, head):
    mask = torch.ones(model.dims.n_layers, model.dims.n_heads)
    mask[layer, head] = 0
    return mask


def zero_columns(model, ids, layer, head):
    """Zeroes W_O's columns (output dimensions) instead of the head's rows."""
    w = model.arch.blocks[layer].W_O
    saved = w.clone()
    try:
        w[:, d_head_slice(model, head)] = 0
        return model(ids).logits
    finally:
        w.copy_(saved)


def zero_values_of_group(model, ids, layer, head):
    """Zeroes the head's key/value group's values: removes every query head of that group."""
    dims = model.dims
    kv = head // (dims.n_heads // dims.n_kv_heads)
    w = model.arch.blocks[layer].W_V
    saved = w.clone()
    try:
        w[:, kv * dims.d_head:(kv + 1) * dims.d_head] = 0
        return model(ids).logits
    finally:
        w.copy_(saved)


def no_restore(model, ids, layer, head):
    model.arch.blocks[layer].W_O[d_head_slice(model, head)] = 0
    return model(ids).logits


WRONG_HEAD_ABLATIONS = [
    (zero_columns, "ROWS"),
    (surgery(lambda m, layer, h: (m.arch.blocks[layer].W_Q, (slice(None), d_head_slice(m, h)))), "queries"),
    (lambda m, ids, layer, h: m(ids).logits, "nothing was removed"),
    (lambda m, ids, layer, h: m(ids, head_mask=_one_off(m, (layer + 1) % m.dims.n_layers, h)).logits, "ROWS"),
    (no_restore, "restored now"),
]


@pytest.mark.parametrize("wrong,match", WRONG_HEAD_ABLATIONS)
def test_head_ablation_wrong(model, wrong, match):
    before = [b.W_O.clone() for b in model.arch.blocks]
    with pytest.raises(ExerciseError, match=match):
        check_head_ablation(wrong, model)
    assert all(torch.equal(w, b.W_O) for w, b in zip(before, model.arch.blocks)), "the check must restore W_O"


def test_head_ablation_names_grouped_query_attention():
    model = UnrolledModel(random_llama(n_layers=4, d_model=48, n_heads=6, n_kv_heads=2))
    with pytest.raises(ExerciseError, match="share key/value head"):
        check_head_ablation(zero_values_of_group, model)


# --- sparse matvec ------------------------------------------------------------------------------------------


def right_sparse_matvec(x, W, threshold):
    kept = (x.abs() >= threshold).nonzero()[:, 0]
    return x[kept] @ W.index_select(0, kept)


def embedding_bag_matvec(x, W, threshold):
    kept = (x.abs() >= threshold).nonzero()[:, 0]
    if kept.numel() == 0:
        return x.new_zeros(W.shape[1])
    return F.embedding_bag(kept[None], W, per_sample_weights=x[kept][None], mode="sum")[0]


@pytest.mark.parametrize("answer", [right_sparse_matvec, embedding_bag_matvec])
def test_sparse_matvec_right(answer, capsys):
    check_sparse_matvec(answer)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong,match", [
    (lambda x, W, t: (x * (x.abs() >= t)) @ W, "NaN"),  # the dense product of the masked input reads every row
    (lambda x, W, t: x[x.abs() > t] @ W[x.abs() > t], ">=, not >"),
    (lambda x, W, t: x[x.abs() >= t].abs() @ W[x.abs() >= t], "sign"),
    (lambda x, W, t: x[x.abs() < t] @ W[x.abs() < t], "NaN"),  # keeps the small entries: reads dropped rows
    (lambda x, W, t: 2 * x[x.abs() >= t] @ W[x.abs() >= t], "wrong values"),
    (lambda x, W, t: x[x.abs() >= t] @ W[x.abs() >= t][:, :1], "shape"),
])
def test_sparse_matvec_wrong(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        check_sparse_matvec(wrong)


# --- all three ----------------------------------------------------------------------------------------------


def _boom(*args):
    raise RuntimeError("boom")


@pytest.mark.parametrize("answer", [_boom, 3, lambda *a: math.nan, lambda *a: torch.zeros(3), lambda *a: "x"])
def test_wrong_kinds_of_answers_get_one_line_errors(answer):
    model = UnrolledModel(random_llama(n_layers=2))
    with pytest.raises(ExerciseError):
        check_block_influence(answer, model)
    with pytest.raises(ExerciseError):
        check_head_ablation(answer, model)
    with pytest.raises(ExerciseError):
        check_sparse_matvec(answer)


def test_checks_wait_for_an_answer(capsys):
    check_block_influence(None, None)
    check_head_ablation(lambda model, ids, layer, head: None, UnrolledModel(random_llama(n_layers=2)))
    check_sparse_matvec(lambda x, W, threshold: None)
    assert capsys.readouterr().out.count("not answered yet") == 3
