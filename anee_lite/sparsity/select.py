"""From importance scores to masks: drop the least important layers, heads or neurons.

Heads and neurons are dropped in equal numbers in every layer (and, with grouped-query attention,
in every key/value group), so that :func:`anee_lite.sparsity.prune` can build a real HF model of
that shape: an HF config has one ``num_attention_heads`` and one ``intermediate_size`` for all layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.architectures import ModelDims
from ..core.validation import check_flag, check_fraction, check_int


def check_scores(name: str, scores, ndim: int, shape: tuple[int, ...] | None = None) -> Tensor:
    """Importance scores: a real ``ndim``-dimensional tensor (of ``shape`` when given) without NaN, as float."""
    what = "[n_layers]" if ndim == 1 else "[n_layers, width]" if shape is None else str(list(shape))
    if not isinstance(scores, Tensor) or scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor {what}, got {type(scores).__name__}"
                        + (f" of {scores.dtype}" if isinstance(scores, Tensor) else ""))
    if scores.dim() != ndim or (shape is not None and tuple(scores.shape) != shape) or scores.numel() == 0:
        raise ValueError(f"{name} must have shape {what}, got {list(scores.shape)}")
    if bool(scores.isnan().any()):
        raise ValueError(f"{name} holds NaN: an importance must be a number (recompute the scores)")
    return scores.float()


def layers_to_skip(influence: Tensor, n: int, *, keep_first: bool = True) -> list[int]:
    """The ``n`` layers of lowest Block Influence (ShortGPT), sorted.

    ``keep_first``: never drop layer 0, which turns embeddings into a residual stream; its cosine
    score is meaningless next to the others' (ShortGPT keeps it too in practice).
    """
    keep_first = check_flag("keep_first", keep_first)
    scores = check_scores("influence", influence, 1).clone()  # [n_layers]
    n_layers = scores.shape[0]
    n = check_int("n", n, low=0, high=n_layers - int(keep_first))
    if keep_first:
        scores[0] = float("inf")
    return sorted(scores.argsort()[:n].tolist())


def head_mask_from_scores(scores: Tensor, dims: ModelDims, heads_per_group: int) -> Tensor:
    """Keep the ``heads_per_group`` most important query heads of every key/value group of every layer.

    Args:
        scores: [n_layers, n_heads] head importance.
        dims: the model's sizes.
        heads_per_group: query heads kept per group, 0..n_heads // n_kv_heads (0 removes attention).

    Returns:
        [n_layers, n_heads] float mask of 0s and 1s.
    """
    group = dims.n_heads // dims.n_kv_heads
    keep = check_int("heads_per_group", heads_per_group, low=0, high=group)
    scores = check_scores("scores", scores, 2, (dims.n_layers, dims.n_heads))  # [n_layers, n_heads]
    by_group = scores.reshape(dims.n_layers, dims.n_kv_heads, group)  # [L, K, H/K]
    mask = torch.zeros_like(by_group)
    if keep:
        mask.scatter_(-1, by_group.topk(keep, dim=-1).indices, 1.0)
    return mask.view(dims.n_layers, dims.n_heads)


def mlp_mask_from_scores(scores: Tensor, fraction_removed: float) -> Tensor:
    """Remove the same number of least important neurons in every layer: [n_layers, d_mlp] 0/1 mask."""
    fraction_removed = check_fraction("fraction_removed", fraction_removed)
    scores = check_scores("scores", scores, 2)  # [n_layers, d_mlp]
    n_layers, d_mlp = scores.shape
    keep = d_mlp - round(fraction_removed * d_mlp)
    mask = torch.zeros(n_layers, d_mlp)
    if keep:
        mask.scatter_(-1, scores.topk(keep, dim=-1).indices, 1.0)
    return mask
