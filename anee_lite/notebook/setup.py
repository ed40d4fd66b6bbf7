"""What every notebook does first: pick the model, say which one ran, fall back to the offline one."""

from __future__ import annotations

import os

from ..core.config import ANEEConfig
from ..io.loading import OFFLINE_ALIAS, ModelUnavailableError
from ..wrapper import ANEEWrapper


def load_notebook_model(default: str = "gpt2", **config_kwargs) -> ANEEWrapper:
    """Load ``$ANEE_MODEL`` (else ``default``); if it cannot be downloaded, load ``smollm2-135m``.

    Prints one line saying which model runs and why, so the first output of a notebook answers it.
    """
    requested = os.environ.get("ANEE_MODEL") or default
    try:
        model = ANEEWrapper(ANEEConfig(model_name=requested, **config_kwargs))
        print(f"Model: {requested} ({model.n_layers} layers)")
    except ModelUnavailableError:
        print(f"Could not download {requested!r} (no access to the HuggingFace hub), "
              f"so this notebook uses the offline model {OFFLINE_ALIAS!r} instead.")
        model = ANEEWrapper(ANEEConfig(model_name=OFFLINE_ALIAS, **config_kwargs))
        print(f"Model: {OFFLINE_ALIAS} ({model.n_layers} layers)")
    return model
