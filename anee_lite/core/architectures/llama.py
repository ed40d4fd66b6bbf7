"""Llama family (SmolLM2, TinyLlama, Llama 2/3, ...): RMSNorm, RoPE, grouped-query attention, SwiGLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Architecture, LayerWeights, ModelDims


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    """Scale each position to unit root-mean-square (no mean subtraction), in float32 like HF."""
    x32 = x.float()  # [B, T, d]
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)  # [B, T, d] / [B, T, 1]
    return w * x32.to(x.dtype)


def rotate_half(x: Tensor) -> Tensor:
    """[..., D] -> [..., D]: (x1, x2) -> (-x2, x1), the 90-degree turn inside each frequency pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_angles(positions: Tensor, inv_freq: Tensor, scaling: float, dtype) -> tuple[Tensor, Tensor]:
    """[B, T] positions -> cos, sin [B, 1, T, D]: each pair turns by position x its frequency."""
    angles = positions[..., None].float() * inv_freq  # [B, T, 1] * [D/2] -> [B, T, D/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # -> [B, 1, T, D]
    return (angles.cos() * scaling).to(dtype), (angles.sin() * scaling).to(dtype)


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of queries or keys [B, n, T, D]."""
    return x * cos + rotate_half(x) * sin


class Llama(Architecture):
    """A HuggingFace ``LlamaForCausalLM``'s weights in the shared vocabulary, re-laid out as [in, out].

    q/k/v are fused into ``W_QKV`` and gate/up into ``W_mlp_in`` (``[W_gate | W_in]``; HF's
    ``up_proj`` is TransformerLens' ``W_in``, ``down_proj`` its ``W_out``).
    """

    n_mlp_matrices = 3  # SwiGLU: W_gate, W_in, W_out
    n_norm_vectors = 1  # RMSNorm: a scale only

    def __init__(self, hf_model, share_weights: bool = False, device=None):
        super().__init__(hf_model, share_weights, device)
        cfg = hf_model.config
        m = hf_model.model
        n_heads, n_kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise ValueError(f"Llama hidden_act {cfg.hidden_act!r} is not supported (only 'silu')")
        self.dims = ModelDims(
            architecture="llama",
            d_model=cfg.hidden_size,
            n_heads=n_heads,
            n_kv_heads=n_kv_heads,
            d_head=m.layers[0].self_attn.q_proj.weight.shape[0] // n_heads,
            d_mlp=m.layers[0].mlp.gate_proj.weight.shape[0],
            n_layers=cfg.num_hidden_layers,
            d_vocab=hf_model.lm_head.weight.shape[0],
            n_ctx=cfg.max_position_embeddings,
        )
        self.eps = cfg.rms_norm_eps
        self.W_E, self.W_U = self.take_embeddings(m.embed_tokens, hf_model.lm_head)  # [d_vocab, d], [d, d_vocab]
        self.W_pos = None  # positions rotate queries and keys instead
        self.blocks = [self._convert_layer(layer) for layer in m.layers]
        self.ln_final_w, self.ln_final_b = self.take(m.norm.weight), None
        # HF has already turned any rope_scaling recipe (llama3, linear, yarn...) into these two
        self.inv_freq = self.take(m.rotary_emb.inv_freq.float())  # [D/2]
        self.rope_scaling = float(getattr(m.rotary_emb, "attention_scaling", 1.0))

    def _convert_layer(self, layer) -> LayerWeights:
        attn, mlp, D = layer.self_attn, layer.mlp, self.dims.d_head
        return LayerWeights(
            ln1_w=self.take(layer.input_layernorm.weight), ln1_b=None,
            W_QKV=self.take_linear([attn.q_proj, attn.k_proj, attn.v_proj]),  # [d, (H + 2K) * D]
            b_QKV=self.take_bias([attn.q_proj, attn.k_proj, attn.v_proj]),
            W_O=self.take_linear([attn.o_proj]), b_O=self.take(attn.o_proj.bias),  # [H * D, d]
            ln2_w=self.take(layer.post_attention_layernorm.weight), ln2_b=None,
            W_mlp_in=self.take_linear([mlp.gate_proj, mlp.up_proj]),  # [d, 2 * d_mlp] = [W_gate | W_in]
            b_mlp_in=self.take_bias([mlp.gate_proj, mlp.up_proj]),
            W_out=self.take_linear([mlp.down_proj]), b_out=self.take(mlp.down_proj.bias),  # [d_mlp, d]
            qkv_widths=(self.dims.n_heads * D, self.dims.n_kv_heads * D, self.dims.n_kv_heads * D),
            gated=True,
        )

    def position_info(self, positions):
        return rope_angles(positions, self.inv_freq, self.rope_scaling, self.W_E.dtype)  # cos, sin [B, 1, T, D]

    def rotate(self, x, pos_info):
        cos, sin = pos_info
        return rope(x, cos, sin)  # [B, n, T, D]

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        return self.W_E[input_ids]  # [B, T] -> [B, T, d]: positions enter later, by rotation

    def norm(self, x, w, b):
        return rms_norm(x, w, self.eps)  # RMSNorm has no shift: b is None

    def mlp_activation(self, pre):
        gate, up = pre.chunk(2, dim=-1)  # [B, T, 2 d_mlp] -> 2 x [B, T, d_mlp]
        return F.silu(gate) * up  # SwiGLU
