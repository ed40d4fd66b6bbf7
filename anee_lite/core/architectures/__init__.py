"""One converter per architecture, one file each; :func:`from_hf` picks it from the HF config's ``model_type``.

Every converter produces the same weight vocabulary and storage convention (see :mod:`.base`). Each module of
this package registers its converter (:func:`register`); importing the package imports them all, so a new
architecture is one file here plus its test.
"""

import importlib
import pkgutil

from .base import CONVERTERS, Architecture, LayerWeights, ModelDims, converter_for, register
from .gpt2 import GPT2
from .llama import Llama

for _module in pkgutil.iter_modules(__path__):  # the architectures added beside gpt2 and llama
    importlib.import_module(f"{__name__}.{_module.name}")


def from_hf(hf_model, *, share_weights: bool = False, device=None) -> Architecture:
    """A HuggingFace causal LM's weights in the shared vocabulary, every matrix [in, out].

    Args:
        hf_model: a ``GPT2LMHeadModel``, ``LlamaForCausalLM``, ... (any model whose ``model_type`` has a converter).
        share_weights: False (default) copies the weights and leaves ``hf_model`` exactly as it was.
            True avoids the copy: the converter may replace ``hf_model``'s linear weights by views of its
            own [in, out] matrices (same values, same ``requires_grad``, new Parameter objects).
        device: where the copied weights go (default: the model's device); with ``share_weights``
            it must be the model's device.

    Raises:
        ValueError: if the model's architecture has no converter.
    """
    converter = converter_for(getattr(hf_model.config, "model_type", None))
    return converter(hf_model, share_weights=share_weights, device=device)


__all__ = ["CONVERTERS", "GPT2", "Architecture", "LayerWeights", "Llama", "ModelDims", "converter_for", "from_hf",
           "register"]
