"""The checks behind notebook 06's exercises, in the series' one convention.

Each ``check_*`` runs the learner's function on inputs the notebook never shows (random tokens, random
layers and heads, random vectors and matrices), compares it with the library (or, for the sparse
product, with the dense product it must equal), prints a one-line verdict when it is right and raises
:class:`~anee_lite.notebook.exercises.ExerciseError` with a hint when it is wrong. None of them prints
the expected answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ...sparsity.scores import block_influence
from ._convention import ExerciseError, call, close, correct, exercise, number, tensor_like


def _random_ids(model, shape: tuple[int, int], seed: int) -> Tensor:
    """[B, T] token ids the learner has not seen."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.dims.d_vocab, shape, generator=gen).to(model.device)


# ----------------------------------------------------------------------------- Block Influence


@exercise("Block Influence")
def check_block_influence(fn: Callable | None, model) -> None:
    """Exercise: ``fn(resid_pre [B, T, d], resid_post [B, T, d]) -> float``, ShortGPT's Block Influence.

    Tried on every layer of ``model`` (an :class:`~anee_lite.core.model.UnrolledModel`) for two rows of
    random tokens, against :func:`anee_lite.sparsity.block_influence`.
    """
    name = "Block Influence"
    ids = _random_ids(model, (2, 12), seed=6)
    expected = block_influence(model, ids)  # [n_layers]
    acts = model(ids, return_resid=True).activations
    for layer in range(model.dims.n_layers):
        pre, post = acts[f"blocks.{layer}.hook_resid_pre"], acts[f"blocks.{layer}.hook_resid_post"]  # [B, T, d]
        got = float(number(name, call(name, fn, pre.clone(), post.clone())))
        if abs(got - float(expected[layer])) <= 1e-4:
            continue
        cos = F.cosine_similarity(pre, post, dim=-1)  # [B, T]
        if abs(got - float(cos.mean())) <= 1e-4:
            raise ExerciseError(f"{name}: at layer {layer} you return the cosine similarity itself; Block Influence "
                                "is 1 minus it (a block that does not turn the residual scores 0).")
        if abs(got - float(1 - F.cosine_similarity(pre.mean(1), post.mean(1), dim=-1).mean())) <= 1e-4:
            raise ExerciseError(f"{name}: you averaged the residual vectors over tokens before the cosine; take the "
                                "cosine of each token's pair of vectors first, then average over all tokens.")
        if abs(got - float(1 - cos[0].mean())) <= 1e-4:
            raise ExerciseError(f"{name}: you used the first sequence only; average over every token of every "
                                "sequence in the batch.")
        hint = "Block Influence lies in [0, 2] (1 - cos, and a cosine lies in [-1, 1]). " if not 0 <= got <= 2 else ""
        raise ExerciseError(f"{name}: wrong value at layer {layer} ({got:.5f}). {hint}Compare each token's "
                            "vector before and after the block: 1 - cosine similarity along d_model (dim=-1), "
                            "averaged over all tokens.")
    correct(name, f"(all {model.dims.n_layers} layers, on tokens you have not seen)")


# ----------------------------------------------------------------------------- head ablation


def _head_mask(model, layer: int, heads) -> Tensor:
    mask = torch.ones(model.dims.n_layers, model.dims.n_heads)
    mask[layer, list(heads)] = 0.0
    return mask


@exercise("Head ablation")
def check_head_ablation(fn: Callable | None, model) -> None:
    """Exercise: ``fn(model, ids [1, T], layer, head) -> logits [1, T, d_vocab]`` without that query head.

    Tried on random tokens for several (layer, head) pairs against the forward's ``head_mask``; the
    model must come back unchanged.
    """
    name = "Head ablation"
    dims = model.dims
    gen = torch.Generator().manual_seed(7)
    ids = _random_ids(model, (1, 10), seed=8)
    before = [blk.W_O.clone() for blk in model.arch.blocks]
    layers = torch.randperm(dims.n_layers, generator=gen)[:3].tolist()
    heads = torch.randint(0, dims.n_heads, (3,), generator=gen).tolist()
    group = dims.n_heads // dims.n_kv_heads
    for layer, head in zip(layers, heads):
        expected = model(ids, head_mask=_head_mask(model, layer, [head])).logits  # [1, T, d_vocab]
        with torch.no_grad():  # an in-place edit of a weight that requires grad is refused under autograd
            got = tensor_like(name, call(name, fn, model, ids.clone(), layer, head), expected)
        if any(not torch.equal(w, blk.W_O) for w, blk in zip(before, model.arch.blocks)):
            for w, blk in zip(before, model.arch.blocks):
                blk.W_O.copy_(w)  # put the weights back so that the rest of the notebook runs on the real model
            raise ExerciseError(f"{name}: your function left the model's W_O changed (restored now). Put the "
                                "weights back before returning (try/finally), or work on a copy.")
        if close(got, expected, atol=1e-4):
            continue
        if close(got, model(ids).logits, atol=1e-5):
            raise ExerciseError(f"{name}: layer {layer}, head {head}: your logits are the full model's; nothing was "
                                "removed.")
        if group > 1:
            kv = head // group
            whole = model(ids, head_mask=_head_mask(model, layer, range(kv * group, (kv + 1) * group))).logits
            if close(got, whole, atol=1e-4):
                raise ExerciseError(f"{name}: you removed all {group} query heads that share key/value head {kv} "
                                    "(zeroing its keys or values does that: grouped-query attention). Remove "
                                    f"query head {head} only.")
        raise ExerciseError(f"{name}: layer {layer}, head {head}: not the logits of the forward with that head "
                            "masked. W_O is stored [n_heads * d_head, d_model]: head h owns the ROWS "
                            "h * d_head:(h + 1) * d_head. (Zeroing the head's queries is not enough: it then "
                            "attends uniformly and still writes.)")
    correct(name, f"(layers {layers}, heads {heads}: the same logits as head_mask)")


# ----------------------------------------------------------------------------- sparse matrix-vector product

_MATVEC_CASES = [(576, 1536, "median"), (1536, 576, 0.8), (7, 5, "tie"), (64, 64, 0.0), (16, 9, "all")]


def _threshold(x: Tensor, rule) -> float:
    magnitude = x.abs()  # [d_in]
    if rule == "median":
        return float(magnitude.median())
    if rule == "tie":
        return float(magnitude.sort().values[3])  # an entry exactly at the threshold: kept (>=)
    if rule == "all":
        return float(magnitude.max()) + 1.0  # nothing kept
    return float(rule)


@exercise("Sparse matvec")
def check_sparse_matvec(fn: Callable | None) -> None:
    """Exercise: ``fn(x [d_in], W [d_in, d_out], threshold) -> [d_out]``, the product over kept inputs only.

    On random shapes and thresholds, the answer must equal the dense product of the masked input,
    ``(x * (x.abs() >= threshold)) @ W``. The rows of W for dropped inputs hold NaN: an answer that
    reads them (a dense product) returns NaN.
    """
    name = "Sparse matvec"
    gen = torch.Generator().manual_seed(9)
    for d_in, d_out, rule in _MATVEC_CASES:
        x = torch.randn(d_in, generator=gen)  # [d_in]
        w = torch.randn(d_in, d_out, generator=gen)  # [d_in, d_out]
        threshold = _threshold(x, rule)
        keep = x.abs() >= threshold  # [d_in]
        expected = (x * keep) @ w  # [d_out]
        poisoned = w.clone()
        poisoned[~keep] = float("nan")  # rows a sparse product never reads
        case = f"d_in={d_in}, d_out={d_out}, threshold={threshold:.4g}"
        got = tensor_like(f"{name} ({case})", call(name, fn, x.clone(), poisoned, threshold), expected)
        if bool(got.isnan().any()):
            raise ExerciseError(f"{name}: NaN for {case}. The rows of W whose input is dropped hold NaN here, "
                                "and your product read them: gather the kept rows (x[kept] @ W[kept], "
                                "index_select, or embedding_bag) instead of multiplying zeros.")
        if close(got, expected, atol=1e-4):
            continue
        if close(got, (x * (x.abs() > threshold)) @ w, atol=1e-4):
            raise ExerciseError(f"{name}: an entry with |x_i| exactly equal to the threshold must be kept "
                                "(>=, not >).")
        if close(got, (x.abs() * keep) @ w, atol=1e-4):
            raise ExerciseError(f"{name}: the magnitudes choose which rows to keep, but the product uses x_i "
                                "itself, sign included.")
        raise ExerciseError(f"{name}: wrong values for {case}: keep the inputs with |x_i| >= threshold and "
                            "sum x_i * W[i, :] over them.")
    correct(name, f"({len(_MATVEC_CASES)} random cases; it never read a skipped row)")
