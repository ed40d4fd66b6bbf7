"""Mistral: the Llama block (RMSNorm, RoPE, grouped-query attention, SwiGLU) with sliding-window attention.

The shared attention is plain causal attention, which equals a sliding window of ``w`` tokens as long as the
sequence is at most ``w`` long: the context window (``n_ctx``) is cut to the window, so longer inputs are
refused instead of computed differently from HuggingFace.
"""

from __future__ import annotations

import dataclasses

from .base import ModelDims, register
from .llama import Llama


@register
class Mistral(Llama):
    """A HuggingFace ``MistralForCausalLM``: Llama's weights and layout; only the context window differs."""

    model_type = "mistral"

    @classmethod
    def dims_from_hf(cls, hf_model) -> ModelDims:
        dims = super().dims_from_hf(hf_model)
        window = getattr(hf_model.config, "sliding_window", None)
        return dataclasses.replace(dims, n_ctx=min(dims.n_ctx, window)) if window else dims
