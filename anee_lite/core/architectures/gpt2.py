"""GPT-2 (and distilgpt2): learned positions, LayerNorm, GELU, fused QKV stored in Conv1D layout."""

from __future__ import annotations

import math
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Architecture, LayerWeights, ModelDims, register


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """Normalise each position to mean 0, variance 1, then scale and shift."""
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)  # [B, T, d] -> [B, T, d]


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's GELU: the tanh approximation."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


@register
class GPT2(Architecture):
    """A HuggingFace ``GPT2LMHeadModel``'s weights in the shared vocabulary.

    HF's Conv1D layers already store [in, out] and ``c_attn`` is already [W_Q | W_K | W_V], so the
    layout needs no change: copied by default, used in place with ``share_weights=True``.
    """

    model_type = "gpt2"
    n_mlp_matrices = 2  # W_in, W_out
    n_norm_vectors = 2  # LayerNorm: scale and shift
    norm_centres = True  # LayerNorm subtracts the mean
    eager_dispatches = MappingProxyType({  # torch.profiler's count per operation of one decoding step
        "attn_norm": 1, "q_proj": 7, "k_proj": 0, "v_proj": 0, "attention": 10, "o_proj": 7, "mlp_norm": 1,
        "mlp_up": 6, "mlp_down": 15, "final_norm": 1, "lm_head": 5, "step": 64, "lens_check": 15, "probe_check": 15,
        "exit_decision": 9, "kv_propagation": 13, "catch_up_layer": 21, "catch_up_call": 18})
    hf_layers = "transformer.h"
    hf_config_keys = MappingProxyType({"n_layers": "n_layer", "d_mlp": "n_inner"})
    head_pruning = ("it needs a Llama-family model (HF's GPT-2 derives the head width from n_embd / n_head); "
                    "use head_mask in the forward instead")

    @classmethod
    def dims_from_hf(cls, hf_model) -> ModelDims:
        cfg = hf_model.config
        return ModelDims(
            architecture=cls.model_type,
            d_model=cfg.n_embd,
            n_heads=cfg.n_head,
            n_kv_heads=cfg.n_head,
            d_head=cfg.n_embd // cfg.n_head,
            d_mlp=hf_model.transformer.h[0].mlp.c_fc.weight.shape[1],
            n_layers=cfg.n_layer,
            d_vocab=hf_model.lm_head.weight.shape[0],
            n_ctx=cfg.n_positions,
        )

    @classmethod
    def slice_layer_tensor(cls, name, w, heads, groups, neurons, d_head):
        if neurons is not None and name in ("mlp.c_fc.weight", "mlp.c_fc.bias"):
            return w[..., neurons]  # Conv1D [d, d_mlp] -> kept columns
        if neurons is not None and name == "mlp.c_proj.weight":
            return w[neurons]  # Conv1D [d_mlp, d] -> kept rows
        return w

    def __init__(self, hf_model, share_weights: bool = False, device=None):
        super().__init__(hf_model, share_weights, device)
        cfg = hf_model.config
        tr = hf_model.transformer
        # The shared attention always divides scores by sqrt(d_head), in the model's dtype.
        if (getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(cfg, "reorder_and_upcast_attn", False)
                or not getattr(cfg, "scale_attn_weights", True)):
            raise ValueError("GPT-2 variants with scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn or "
                             "scale_attn_weights=False are not supported")
        if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"GPT-2 activation_function {cfg.activation_function!r} is not supported "
                             "(only 'gelu_new')")
        self.dims = self.dims_from_hf(hf_model)
        self.eps = cfg.layer_norm_epsilon
        self.W_E, self.W_U = self.take_embeddings(tr.wte, hf_model.lm_head)  # [d_vocab, d], [d, d_vocab]
        self.W_pos = self.take(tr.wpe.weight)  # [n_ctx, d]
        self.blocks = [self._convert_block(blk, self.dims.d_model) for blk in tr.h]
        self.ln_final_w, self.ln_final_b = self.take(tr.ln_f.weight), self.take(tr.ln_f.bias)

    def _convert_block(self, blk, d: int) -> LayerWeights:
        attn, mlp = blk.attn, blk.mlp
        return LayerWeights(
            ln1_w=self.take(blk.ln_1.weight), ln1_b=self.take(blk.ln_1.bias),
            W_QKV=self.take(attn.c_attn.weight), b_QKV=self.take(attn.c_attn.bias),  # [d, 3d], [3d]
            W_O=self.take(attn.c_proj.weight), b_O=self.take(attn.c_proj.bias),  # [d, d], [d]
            ln2_w=self.take(blk.ln_2.weight), ln2_b=self.take(blk.ln_2.bias),
            W_mlp_in=self.take(mlp.c_fc.weight), b_mlp_in=self.take(mlp.c_fc.bias),  # [d, d_mlp], [d_mlp]
            W_out=self.take(mlp.c_proj.weight), b_out=self.take(mlp.c_proj.bias),  # [d_mlp, d], [d]
            qkv_widths=(d, d, d),
            gated=False,
        )

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        return self.W_E[input_ids] + self.W_pos[positions]  # [B, T] -> [B, T, d]: token + position

    def norm(self, x, w, b):
        return layer_norm(x, w, b, self.eps)

    def mlp_activation(self, pre):
        return gelu_new(pre)  # [B, T, d_mlp]
