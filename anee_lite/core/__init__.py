"""The unrolled core: configuration, the forward pass, attention, the KV cache, generation, the budget.

Nothing here imports another ``anee_lite`` subpackage: lenses, adaptive exit, cost, loading and
the notebook helpers are all built on top of it.
"""

from .architectures import CONVERTERS, Architecture, LayerWeights, ModelDims, from_hf
from .cache import KV_FILLS, KVCache
from .controller import Controller
from .masks import ActivationThresholds, Sparsity
from .metrics import entropy, kl_divergence, mean_kl, next_token_nll, perplexity, top1_agreement
from .model import ForwardCall, ForwardOutput, ForwardStats, UnrolledModel

__all__ = [
    "CONVERTERS",
    "KV_FILLS",
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
    "entropy",
    "from_hf",
    "kl_divergence",
    "mean_kl",
    "next_token_nll",
    "perplexity",
    "top1_agreement",
]
