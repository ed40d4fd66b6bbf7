"""GPT-2 (and distilgpt2): learned positions, LayerNorm, GELU, fused QKV stored in Conv1D layout."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Architecture, ModelDims, linear, split_heads, tie_in_out


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """Normalise each position to mean 0, variance 1, then scale and shift."""
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)  # [B, T, d] -> [B, T, d]


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's GELU: the tanh approximation."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class GPT2(Architecture):
    """A HuggingFace ``GPT2LMHeadModel``'s weights, read in place (HF's Conv1D already stores [in, out])."""

    n_mlp_matrices = 2  # c_fc, c_proj
    n_norm_vectors = 2  # LayerNorm: scale and shift

    def __init__(self, hf_model):
        cfg = hf_model.config
        tr = hf_model.transformer
        if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(cfg, "reorder_and_upcast_attn", False):
            raise ValueError("GPT-2 variants with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn "
                             "are not supported")
        if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"GPT-2 activation_function {cfg.activation_function!r} is not supported "
                             "(only 'gelu_new')")
        self.dims = ModelDims(
            architecture="gpt2",
            d_model=cfg.n_embd,
            n_heads=cfg.n_head,
            n_kv_heads=cfg.n_head,
            d_head=cfg.n_embd // cfg.n_head,
            d_mlp=tr.h[0].mlp.c_fc.weight.shape[1],
            n_layers=cfg.n_layer,
            d_vocab=hf_model.lm_head.weight.shape[0],
            n_ctx=cfg.n_positions,
        )
        self.eps = cfg.layer_norm_epsilon
        self.W_U_in_out = tie_in_out(tr.wte, hf_model.lm_head)  # [d, d_vocab]
        self.wte = tr.wte.weight  # [d_vocab, d]
        self.wpe = tr.wpe.weight  # [n_ctx, d]
        self.h = tr.h  # blocks, HF names: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj
        self.ln_f = tr.ln_f

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        return self.wte[input_ids] + self.wpe[positions]  # [B, T] -> [B, T, d]

    def attn_qkv(self, layer, resid_pre, positions):
        blk, H = self.h[layer], self.dims.n_heads
        x = layer_norm(resid_pre, blk.ln_1.weight, blk.ln_1.bias, self.eps)  # [B, T, d]
        qkv = linear(x, blk.attn.c_attn.weight, blk.attn.c_attn.bias)  # [B, T, d] -> [B, T, 3d]
        q, k, v = qkv.split(self.dims.d_model, dim=-1)  # 3 x [B, T, d]
        return split_heads(q, H), split_heads(k, H), split_heads(v, H)  # -> [B, H, T, D]

    def attn_kv(self, layer, resid, positions):
        blk, H, d = self.h[layer], self.dims.n_heads, self.dims.d_model
        x = layer_norm(resid, blk.ln_1.weight, blk.ln_1.bias, self.eps)  # [B, T, d]
        kv = linear(x, blk.attn.c_attn.weight[:, d:], blk.attn.c_attn.bias[d:])  # [B, T, d] -> [B, T, 2d], no Q
        k, v = kv.split(d, dim=-1)  # 2 x [B, T, d]
        return split_heads(k, H), split_heads(v, H)  # -> [B, H, T, D]

    def attn_out(self, layer, z):
        proj = self.h[layer].attn.c_proj
        return linear(z, proj.weight, proj.bias)  # [B, T, d] -> [B, T, d]

    def mlp(self, layer, resid_mid):
        blk = self.h[layer]
        x = layer_norm(resid_mid, blk.ln_2.weight, blk.ln_2.bias, self.eps)  # [B, T, d]
        hidden = gelu_new(linear(x, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias))  # [B, T, d] -> [B, T, d_mlp]
        return linear(hidden, blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)  # [B, T, d_mlp] -> [B, T, d]

    def final_norm(self, resid):
        return layer_norm(resid, self.ln_f.weight, self.ln_f.bias, self.eps)  # [B, T, d] -> [B, T, d]

    def unembed(self, normed):
        return linear(normed, self.W_U_in_out)  # [B, T, d] -> [B, T, d_vocab]

    @property
    def W_U(self):
        return self.W_U_in_out.t()
