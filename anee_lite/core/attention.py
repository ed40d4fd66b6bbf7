"""Masks, positions and scaled dot-product attention: the parts of a block that mix tokens."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def position_ids(attention_mask: Tensor) -> Tensor:
    """[B, T] mask -> [B, T] positions that count only real tokens, so left padding changes nothing."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask_4d(key_mask: Tensor, n_past: int, n_new: int) -> Tensor:
    """[B, T_k] key mask -> [B, 1, T, T_k] bool: causal, padding hidden, never an all-hidden row."""
    q_idx = torch.arange(n_past, n_past + n_new, device=key_mask.device)[:, None]  # [T, 1]
    k_idx = torch.arange(n_past + n_new, device=key_mask.device)[None, :]  # [1, T_k]
    allowed = (k_idx <= q_idx)[None] & key_mask[:, None, :]  # [B, T, T_k]
    allowed = allowed | (k_idx == q_idx)[None]  # a padding query sees itself, so its softmax has no NaN
    return allowed[:, None]  # [B, 1, T, T_k]


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, want_pattern: bool,
              edit_pattern: Callable[[Tensor], Tensor] | None = None):
    """Scaled dot-product attention with grouped-query heads; the pattern only when asked for.

    Args:
        q: [B, H, T, D]; k, v: [B, K, T_k, D] with H a multiple of K.
        mask: [B, 1, T, T_k] bool (True = may attend) or None.
        causal: with no mask, whether to apply the plain causal mask (T == T_k).
        want_pattern: compute the softmax explicitly and return it [B, H, T, T_k].
        edit_pattern: a function of the pattern returning the one the values are mixed with (a hook);
            implies ``want_pattern``.

    Returns:
        z [B, T, H * D] and the pattern (or None).
    """
    B, H, T, D = q.shape
    if not want_pattern and edit_pattern is None:
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           enable_gqa=k.shape[1] != H)  # [B, H, T, D]
        return z.transpose(1, 2).reshape(B, T, H * D), None
    group = H // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # [B, K, T_k, D] -> [B, H, T_k, D]
    scores = q @ k.transpose(-1, -2) / D**0.5  # [B, H, T, D] @ [B, H, D, T_k] -> [B, H, T, T_k]
    if mask is None and causal:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # [T, T_k]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    pattern = scores.softmax(dim=-1)  # [B, H, T, T_k]
    if edit_pattern is not None:
        pattern = edit_pattern(pattern)  # [B, H, T, T_k]
    z = pattern @ v  # [B, H, T, T_k] @ [B, H, T_k, D] -> [B, H, T, D]
    return z.transpose(1, 2).reshape(B, T, H * D), pattern  # -> [B, T, H * D]
