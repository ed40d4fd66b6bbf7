"""The unrolled core: configuration, the forward pass, attention, the KV cache, generation, the budget.

Nothing here imports another ``anee_lite`` subpackage: lenses, adaptive exit, cost, loading and
the notebook helpers are all built on top of it.
"""

from .architectures import CONVERTERS, Architecture, LayerWeights, ModelDims, from_hf
from .budget import budget_exit_layer, budget_table
from .cache import KVCache
from .config import ANEEConfig
from .controller import Controller
from .masks import ActivationThresholds, Sparsity
from .metrics import entropy, kl_divergence, mean_kl, next_token_nll, perplexity, top1_agreement
from .model import ForwardCall, ForwardOutput, ForwardStats, UnrolledModel

__all__ = [
    "CONVERTERS",
    "ANEEConfig",
    "ActivationThresholds",
    "Architecture",
    "Controller",
    "ForwardCall",
    "ForwardOutput",
    "ForwardStats",
    "KVCache",
    "LayerWeights",
    "ModelDims",
    "Sparsity",
    "UnrolledModel",
    "budget_exit_layer",
    "budget_table",
    "entropy",
    "from_hf",
    "kl_divergence",
    "mean_kl",
    "next_token_nll",
    "perplexity",
    "top1_agreement",
]
