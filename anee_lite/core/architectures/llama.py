"""Llama family (SmolLM2, TinyLlama, Llama 2/3, ...): RMSNorm, RoPE, grouped-query attention, SwiGLU."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Architecture, ModelDims, linear, split_heads, tie_in_out, to_in_out_layout


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


@dataclass
class LlamaLayer:
    """One decoder layer's weights, [in, out] layout; q/k/v and gate/up fused into one matrix each."""

    input_layernorm: Tensor  # [d]
    W_qkv: Tensor  # [d, (H + 2K) * D]
    b_qkv: Tensor | None  # [(H + 2K) * D] when attention_bias
    W_o: Tensor  # [H * D, d]
    b_o: Tensor | None
    post_attention_layernorm: Tensor  # [d]
    W_gate_up: Tensor  # [d, 2 * d_mlp]
    b_gate_up: Tensor | None
    W_down: Tensor  # [d_mlp, d]
    b_down: Tensor | None


def _bias(*modules):
    biases = [m.bias for m in modules]
    return None if biases[0] is None else torch.cat([b.detach() for b in biases])


def _convert_layer(layer) -> LlamaLayer:
    attn, mlp = layer.self_attn, layer.mlp
    return LlamaLayer(
        input_layernorm=layer.input_layernorm.weight,
        W_qkv=to_in_out_layout([attn.q_proj, attn.k_proj, attn.v_proj]),
        b_qkv=_bias(attn.q_proj, attn.k_proj, attn.v_proj),
        W_o=to_in_out_layout([attn.o_proj]),
        b_o=attn.o_proj.bias,
        post_attention_layernorm=layer.post_attention_layernorm.weight,
        W_gate_up=to_in_out_layout([mlp.gate_proj, mlp.up_proj]),
        b_gate_up=_bias(mlp.gate_proj, mlp.up_proj),
        W_down=to_in_out_layout([mlp.down_proj]),
        b_down=mlp.down_proj.bias,
    )


class Llama(Architecture):
    """A HuggingFace ``LlamaForCausalLM``'s weights, re-laid out once (the HF model keeps views)."""

    n_mlp_matrices = 3  # SwiGLU: gate, up, down
    n_norm_vectors = 1  # RMSNorm: a scale only

    def __init__(self, hf_model):
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
        self.W_U_in_out = tie_in_out(m.embed_tokens, hf_model.lm_head)  # [d, d_vocab]
        self.embed_tokens = m.embed_tokens.weight  # [d_vocab, d]
        self.layers = [_convert_layer(layer) for layer in m.layers]
        self.norm = m.norm.weight  # [d]
        # HF has already turned any rope_scaling recipe (llama3, linear, yarn...) into these two
        self.inv_freq = m.rotary_emb.inv_freq.float()  # [D/2]
        self.rope_scaling = float(getattr(m.rotary_emb, "attention_scaling", 1.0))

    def position_info(self, positions):
        return rope_angles(positions, self.inv_freq, self.rope_scaling, self.embed_tokens.dtype)

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        return self.embed_tokens[input_ids]  # [B, T] -> [B, T, d]: positions enter later, by rotation

    def attn_qkv(self, layer, resid_pre, pos_info):
        lyr, (cos, sin) = self.layers[layer], pos_info
        H, K, D = self.dims.n_heads, self.dims.n_kv_heads, self.dims.d_head
        x = rms_norm(resid_pre, lyr.input_layernorm, self.eps)  # [B, T, d]
        qkv = linear(x, lyr.W_qkv, lyr.b_qkv)  # [B, T, d] -> [B, T, (H + 2K) * D]
        q, k, v = qkv.split([H * D, K * D, K * D], dim=-1)
        q, k, v = split_heads(q, H), split_heads(k, K), split_heads(v, K)  # [B, H, T, D], [B, K, T, D] x 2
        return rope(q, cos, sin), rope(k, cos, sin), v

    def attn_kv(self, layer, resid, pos_info):
        lyr, (cos, sin) = self.layers[layer], pos_info
        H, K, D = self.dims.n_heads, self.dims.n_kv_heads, self.dims.d_head
        x = rms_norm(resid, lyr.input_layernorm, self.eps)  # [B, T, d]
        b_kv = None if lyr.b_qkv is None else lyr.b_qkv[H * D:]
        kv = linear(x, lyr.W_qkv[:, H * D:], b_kv)  # [B, T, d] -> [B, T, 2K * D]: the K and V columns only
        k, v = kv.split(K * D, dim=-1)
        return rope(split_heads(k, K), cos, sin), split_heads(v, K)  # [B, K, T, D] each

    def attn_out(self, layer, z):
        lyr = self.layers[layer]
        return linear(z, lyr.W_o, lyr.b_o)  # [B, T, H * D] -> [B, T, d]

    def mlp(self, layer, resid_mid):
        lyr = self.layers[layer]
        x = rms_norm(resid_mid, lyr.post_attention_layernorm, self.eps)  # [B, T, d]
        gate, up = linear(x, lyr.W_gate_up, lyr.b_gate_up).chunk(2, dim=-1)  # [B, T, d] -> 2 x [B, T, d_mlp]
        return linear(F.silu(gate) * up, lyr.W_down, lyr.b_down)  # [B, T, d_mlp] -> [B, T, d]

    def final_norm(self, resid):
        return rms_norm(resid, self.norm, self.eps)  # [B, T, d] -> [B, T, d]

    def unembed(self, normed):
        return linear(normed, self.W_U_in_out)  # [B, T, d] -> [B, T, d_vocab]

    @property
    def W_U(self):
        return self.W_U_in_out.t()
