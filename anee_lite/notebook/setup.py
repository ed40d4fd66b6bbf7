"""What every notebook does first: pick the model, say exactly which one ran, fall back to the offline one."""

from __future__ import annotations

import os

from ..config import ANEEConfig
from ..io.loading import OFFLINE_ALIAS, ModelUnavailableError
from ..wrapper import ANEEWrapper

OFFLINE_MODEL_DESCRIPTION = "SmolLM2-135M-Instruct, dequantized to float32 from a Q4_1 GGUF, offline"


def describe_model(model_name: str, n_layers: int) -> str:
    """One line naming the model that runs, exactly (the offline alias is the Instruct model, from Q4_1)."""
    if model_name == OFFLINE_ALIAS:
        return f"Model: {OFFLINE_ALIAS} = {OFFLINE_MODEL_DESCRIPTION} ({n_layers} layers)"
    return f"Model: {model_name} ({n_layers} layers)"


def load_notebook_model(default: str = OFFLINE_ALIAS, **config_kwargs) -> ANEEWrapper:
    """Load ``$ANEE_MODEL`` (else ``default``); if it cannot be downloaded, load ``smollm2-135m``.

    Every notebook runs the same model by default, online (Colab) and offline, so that their prose
    and stored outputs describe what the reader runs. Prints one line saying which model runs and why.
    """
    requested = os.environ.get("ANEE_MODEL") or default
    try:
        model = ANEEWrapper(ANEEConfig(model_name=requested, **config_kwargs))
    except ModelUnavailableError:
        print(f"Could not download {requested!r} (no access to the HuggingFace hub), "
              f"so this notebook uses the offline model {OFFLINE_ALIAS!r} instead.")
        requested = OFFLINE_ALIAS
        model = ANEEWrapper(ANEEConfig(model_name=OFFLINE_ALIAS, **config_kwargs))
    print(describe_model(requested, model.n_layers))
    return model
