"""Getting models and data: hub and offline loading (with its verified cache), shipped assets and texts, atomic file writes."""

from .assets import DATA_DIR, activation_quantiles_path, lens_path, probe_path
from .loading import (
    OFFLINE_ALIAS,
    ModelUnavailableError,
    OfflineCacheError,
    hub_reachable,
    load_pretrained,
    offline_model_cache_dir,
)
from .texts import EVAL_TEXTS, TEXT_ROLES, eval_ids, eval_text

__all__ = [
    "DATA_DIR",
    "EVAL_TEXTS",
    "OFFLINE_ALIAS",
    "TEXT_ROLES",
    "ModelUnavailableError",
    "OfflineCacheError",
    "activation_quantiles_path",
    "eval_ids",
    "eval_text",
    "hub_reachable",
    "lens_path",
    "load_pretrained",
    "offline_model_cache_dir",
    "probe_path",
]
