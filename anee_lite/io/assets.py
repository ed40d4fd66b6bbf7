"""The tuned lens, exit probe and activation-sparsity quantiles shipped for smollm2-135m, and how to find them."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # anee_lite/data
OFFLINE_ALIAS = "smollm2-135m"  # the offline model's name for load_pretrained; the shipped assets are for it
# Exits are allowed after every second layer from 7 on: 12 places to stop (the oracle gains from each),
# 12 probe checks at most per token (each a few d_model-long reductions), and 12 fp16 translators in one
# 8 MB file. Layers before 7 agree with the full model too rarely to be worth a check.
SMOLLM2_EXIT_LAYERS = tuple(range(7, 30, 2))


def lens_path(folder: Path = DATA_DIR, model_name: str = OFFLINE_ALIAS) -> Path:
    """Where the tuned lens for ``model_name`` lives."""
    return _asset(folder, model_name, "tuned_lens")


def probe_path(folder: Path = DATA_DIR, model_name: str = OFFLINE_ALIAS) -> Path:
    """Where the exit probe for ``model_name`` lives."""
    return _asset(folder, model_name, "exit_probe")


def activation_quantiles_path(folder: Path = DATA_DIR, model_name: str = OFFLINE_ALIAS) -> Path:
    """Where the activation-sparsity quantile table for ``model_name`` lives."""
    return _asset(folder, model_name, "activation_quantiles")


def _asset(folder, model_name, kind: str) -> Path:
    if isinstance(folder, bytes) or not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or os.PathLike), got {type(folder).__name__}")
    if not isinstance(model_name, str) or not model_name.strip():  # None would name 'None_exit_probe...'
        raise ValueError(f"model_name must be a non-empty str such as {OFFLINE_ALIAS!r}, got {model_name!r}")
    return Path(folder) / f"{model_name}_{kind}.safetensors"


def is_smollm2(model_name: str | None) -> bool:
    """Whether the shipped assets fit ``model_name`` (the offline alias or its hub id)."""
    return isinstance(model_name, str) and bool(model_name) and model_name.lower().replace("_", "-").split("/")[-1].startswith(OFFLINE_ALIAS)
