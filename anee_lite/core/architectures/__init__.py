"""One converter per architecture; :func:`from_hf` picks it from the HF config's ``model_type``.

Every converter produces the same weight vocabulary and storage convention (see :mod:`.base`).
"""

from .base import Architecture, LayerWeights, ModelDims
from .gpt2 import GPT2
from .llama import Llama

CONVERTERS = {"gpt2": GPT2, "llama": Llama}


def from_hf(hf_model, *, share_weights: bool = False, device=None) -> Architecture:
    """A HuggingFace causal LM's weights in the shared vocabulary, every matrix [in, out].

    Args:
        hf_model: a ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (any model whose ``model_type`` has a converter).
        share_weights: False (default) copies the weights and leaves ``hf_model`` exactly as it was.
            True avoids the copy: the converter may replace ``hf_model``'s linear weights by views of its
            own [in, out] matrices (same values, same ``requires_grad``, new Parameter objects).
        device: where the copied weights go (default: the model's device); with ``share_weights``
            it must be the model's device.

    Raises:
        ValueError: if the model's architecture has no converter.
    """
    model_type = getattr(hf_model.config, "model_type", None)
    if model_type not in CONVERTERS:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported architectures: {sorted(CONVERTERS)}"
        )
    return CONVERTERS[model_type](hf_model, share_weights=share_weights, device=device)


__all__ = ["CONVERTERS", "GPT2", "Architecture", "LayerWeights", "Llama", "ModelDims", "from_hf"]
