"""One converter per architecture; :func:`from_hf` picks it from the HF config's ``model_type``."""

from .base import Architecture, ModelDims
from .gpt2 import GPT2
from .llama import Llama

CONVERTERS = {"gpt2": GPT2, "llama": Llama}


def from_hf(hf_model) -> Architecture:
    """Wrap a HuggingFace causal LM's weights (shared, not copied) in our internal layout.

    Raises:
        ValueError: if the model's architecture has no converter.
    """
    model_type = getattr(hf_model.config, "model_type", None)
    if model_type not in CONVERTERS:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported architectures: {sorted(CONVERTERS)}"
        )
    return CONVERTERS[model_type](hf_model)


__all__ = ["CONVERTERS", "GPT2", "Architecture", "Llama", "ModelDims", "from_hf"]
