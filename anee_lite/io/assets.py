"""The tuned lens and exit probe shipped for smollm2-135m, and how to find them."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # anee_lite/data
OFFLINE_ALIAS = "smollm2-135m"  # the offline model's name for load_pretrained; the shipped assets are for it
# Exits are allowed only after these layers: few checks, and 7 fp16 translators fit in one < 5 MB file.
SMOLLM2_EXIT_LAYERS = (9, 12, 15, 18, 21, 24, 27)


def lens_path(folder: Path = DATA_DIR, model_name: str = OFFLINE_ALIAS) -> Path:
    """Where the tuned lens for ``model_name`` lives."""
    return Path(folder) / f"{model_name}_tuned_lens.safetensors"


def probe_path(folder: Path = DATA_DIR, model_name: str = OFFLINE_ALIAS) -> Path:
    """Where the exit probe for ``model_name`` lives."""
    return Path(folder) / f"{model_name}_exit_probe.safetensors"


def is_smollm2(model_name: str | None) -> bool:
    """Whether the shipped assets fit ``model_name`` (the offline alias or its hub id)."""
    return bool(model_name) and model_name.lower().replace("_", "-").split("/")[-1].startswith(OFFLINE_ALIAS)
