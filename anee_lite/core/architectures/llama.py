"""Llama family (SmolLM2, TinyLlama, Llama 2/3, ...): RMSNorm, RoPE, grouped-query attention, SwiGLU."""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Architecture, LayerWeights, ModelDims, keep_blocks, register


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    """Scale each position to unit root-mean-square (no mean subtraction), in float32 like HF."""
    normed = F.rms_norm(x.float(), x.shape[-1:], eps=eps)  # [B, T, d]: x / sqrt(mean(x^2) + eps), one call
    return w * normed.to(x.dtype)  # HF's order: cast back, then scale


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


@register
class Llama(Architecture):
    """A HuggingFace ``LlamaForCausalLM``'s weights in the shared vocabulary, re-laid out as [in, out].

    q/k/v are fused into ``W_QKV`` and gate/up into ``W_mlp_in`` (``[W_gate | W_in]``; HF's
    ``up_proj`` is TransformerLens' ``W_in``, ``down_proj`` its ``W_out``).
    """

    model_type = "llama"
    n_mlp_matrices = 3  # SwiGLU: W_gate, W_in, W_out
    n_norm_vectors = 1  # RMSNorm: a scale only
    norm_centres = False  # RMSNorm keeps the mean
    eager_dispatches = MappingProxyType({  # torch.profiler's count per operation of one decoding step
        "attn_norm": 4, "q_proj": 6, "k_proj": 0, "v_proj": 0, "attention": 16, "o_proj": 6, "mlp_norm": 4,
        "mlp_gate": 5, "mlp_up": 3, "mlp_down": 6, "final_norm": 4, "lm_head": 5, "step": 73, "lens_check": 18,
        "probe_check": 15, "exit_decision": 9, "kv_propagation": 22, "catch_up_layer": 21, "catch_up_call": 29})
    hf_layers = "model.layers"
    hf_config_keys = MappingProxyType({"n_layers": "num_hidden_layers", "d_mlp": "intermediate_size",
                                       "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
                                       "d_head": "head_dim"})

    @classmethod
    def dims_from_hf(cls, hf_model) -> ModelDims:
        cfg, layer = hf_model.config, hf_model.model.layers[0]
        n_heads = cfg.num_attention_heads
        return ModelDims(
            architecture=cls.model_type,
            d_model=cfg.hidden_size,
            n_heads=n_heads,
            n_kv_heads=cfg.num_key_value_heads or n_heads,
            d_head=layer.self_attn.q_proj.weight.shape[0] // n_heads,
            d_mlp=layer.mlp.gate_proj.weight.shape[0],
            n_layers=cfg.num_hidden_layers,
            d_vocab=hf_model.lm_head.weight.shape[0],
            n_ctx=cfg.max_position_embeddings,
        )

    @classmethod
    def slice_layer_tensor(cls, name, w, heads, groups, neurons, d_head):
        if neurons is not None:
            if name in ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias"):
                return w[neurons]  # [d_mlp, d] (out, in) -> kept rows
            if name == "mlp.down_proj.weight":
                return w[:, neurons]  # [d, d_mlp] -> kept columns
        if heads is not None:
            if name in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                return keep_blocks(w, heads, d_head)  # [H * D, ...] -> kept heads
            if name in ("self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.k_proj.bias",
                        "self_attn.v_proj.bias"):
                return keep_blocks(w, groups, d_head)  # [K * D, ...] -> kept groups
            if name == "self_attn.o_proj.weight":
                return keep_blocks(w.t(), heads, d_head).t()  # [d, H * D] -> kept heads' columns
        return w

    def __init__(self, hf_model, share_weights: bool = False, device=None):
        super().__init__(hf_model, share_weights, device)
        cfg = hf_model.config
        m = hf_model.model
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise ValueError(f"Llama hidden_act {cfg.hidden_act!r} is not supported (only 'silu')")
        self.dims = self.dims_from_hf(hf_model)
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
