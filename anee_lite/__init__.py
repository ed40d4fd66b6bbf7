"""anee-lite: an exact, readable early-exit engine for GPT-2 and Llama-family models."""

from .budget import budget_exit_layer, budget_table
from .cache import KVCache
from .config import ANEEConfig
from .generation import GenerationResult, greedy_generate
from .model import ForwardOutput, ForwardStats, UnrolledModel
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
]
__version__ = "0.1.0"
