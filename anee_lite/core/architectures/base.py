"""What every architecture provides to the shared forward pass.

The forward loop in :mod:`anee_lite.model` is written once. It only needs, for each architecture,
the handful of functions below; everything that differs between GPT-2 and Llama lives in the
architecture's own module (one converter per architecture, as in TransformerLens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ModelDims:
    """Sizes of a decoder-only transformer, in TransformerLens' vocabulary."""

    architecture: str  # "gpt2" or "llama": which converter built the weights
    d_model: int  # width of the residual stream
    n_heads: int  # query heads per attention layer
    n_kv_heads: int  # key/value heads (< n_heads means grouped-query attention)
    d_head: int  # width of one head
    d_mlp: int  # hidden width of the MLP
    n_layers: int  # decoder blocks
    d_vocab: int  # rows of the unembedding
    n_ctx: int  # longest sequence the positions support


class Architecture:
    """The per-architecture half of the forward pass; subclasses hold the (shared) HF weights.

    Every method is a pure function of its inputs and the weights. Shapes use
    B = batch, T = tokens in this call, d = d_model, H = n_heads, K = n_kv_heads, D = d_head.
    """

    dims: ModelDims
    n_mlp_matrices: int  # weight matrices in one MLP (the cost model counts them)
    n_norm_vectors: int  # learned [d_model] vectors in one norm: scale (and shift)

    def position_info(self, positions: Tensor):
        """Whatever the attention needs about positions, computed once per forward, not per layer."""
        return positions

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """[B, T] token ids and positions -> [B, T, d] first residual stream."""
        raise NotImplementedError

    def attn_qkv(self, layer: int, resid_pre: Tensor, pos_info) -> tuple[Tensor, Tensor, Tensor]:
        """[B, T, d] -> q [B, H, T, D], k and v [B, K, T, D] (normed, projected, rotated).

        ``pos_info`` is what :meth:`position_info` returned for these tokens.
        """
        raise NotImplementedError

    def attn_kv(self, layer: int, resid: Tensor, pos_info) -> tuple[Tensor, Tensor]:
        """Keys and values only: what an exited token still owes to deeper layers."""
        raise NotImplementedError

    def attn_out(self, layer: int, z: Tensor) -> Tensor:
        """[B, T, H * D] mixed values -> [B, T, d] written back to the residual stream."""
        raise NotImplementedError

    def mlp(self, layer: int, resid_mid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d]: the MLP's contribution, its input norm included."""
        raise NotImplementedError

    def final_norm(self, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d]: the norm before the unembedding."""
        raise NotImplementedError

    def unembed(self, normed: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d_vocab] logits."""
        raise NotImplementedError

    @property
    def W_U(self) -> Tensor:
        """[d_vocab, d] unembedding matrix (tied to the embedding in GPT-2 and SmolLM2)."""
        raise NotImplementedError


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """[B, T, n * D] -> [B, n, T, D]."""
    B, T, _ = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)  # [B, T, n, D] -> [B, n, T, D]


def to_in_out_layout(modules: list) -> Tensor:
    """Re-store ``nn.Linear`` weights as one contiguous [in, sum(out)] matrix; the modules keep views of it.

    On CPU a matrix-vector product with the weight stored [in, out] streams memory about 1.3-2x
    faster than with PyTorch's [out, in] (measured on SmolLM2's layers and lm_head). The HF
    modules get transposed views of the new matrix, so they still compute the same thing and
    the weights exist once in memory.
    """
    weights = [m.weight.detach() for m in modules]  # each [out_i, in]
    w_in_out = torch.cat([w.t() for w in weights], dim=1).contiguous()  # [in, sum(out_i)]
    start = 0
    for m, w in zip(modules, weights):
        m.weight = torch.nn.Parameter(w_in_out[:, start:start + w.shape[0]].t(), requires_grad=False)
        start += w.shape[0]
    return w_in_out


def tie_in_out(embedding, lm_head) -> Tensor:
    """[d_vocab, d] unembedding -> contiguous [d, d_vocab]; a tied embedding keeps sharing it."""
    tied = embedding.weight is lm_head.weight
    w_in_out = to_in_out_layout([lm_head])  # [d, d_vocab]
    if tied:
        embedding.weight = lm_head.weight  # the same Parameter again, so the tie survives
    return w_in_out


def linear(x: Tensor, w_in_out: Tensor, bias: Tensor | None = None) -> Tensor:
    """[..., in] @ [in, out] + bias -> [..., out] (F.linear on the transposed view: no copy)."""
    return F.linear(x, w_in_out.t(), bias)
