"""anee-lite: an exact, readable early-exit engine for GPT-2 and Llama-family models.

The package is layered; each layer imports only the ones below it (``import-linter`` enforces it):

* :mod:`anee_lite.core`: the unrolled forward, attention, KV cache, the seed's budget.
* :mod:`anee_lite.decoding`: greedy and self-speculative generation, one result type.
* :mod:`anee_lite.io`: loading models (hub, local folders, the offline SmolLM2), shipped texts and assets.
* :mod:`anee_lite.lens` and :mod:`anee_lite.cost`: reading middle layers; what a token costs.
* :mod:`anee_lite.adaptive`: exit controllers, the exit probe, calibration, evaluation.
* :mod:`anee_lite.wrapper`: the seed's front door, :class:`ANEEWrapper`.
* :mod:`anee_lite.notebook` and :mod:`anee_lite.cli`: plots, widgets, the command line.
"""

from .budget import budget_exit_layer, budget_table
from .config import ANEEConfig
from .core import ForwardOutput, ForwardStats, KVCache, UnrolledModel
from .decoding import GenerationResult, greedy_generate
from .io import load_pretrained
from .wrapper import ANEEWrapper

__all__ = [
    "ANEEConfig",
    "ANEEWrapper",
    "ForwardOutput",
    "ForwardStats",
    "GenerationResult",
    "KVCache",
    "UnrolledModel",
    "budget_exit_layer",
    "budget_table",
    "greedy_generate",
    "load_pretrained",
]
__version__ = "0.1.0"
