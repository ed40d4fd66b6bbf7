"""Decoding strategies on the unrolled model, one result type (:class:`GenerationResult`) for all of them.

:func:`greedy_generate` decodes token by token (with or without a KV cache, under a static exit, a
controller or sparsity masks); :func:`speculative_generate` drafts with the first layers and verifies with
all of them, for the full model's output in less time (``greedy_generate`` calls it when given draft
arguments). Everything here is built on :mod:`anee_lite.core` alone.
"""

from .greedy import greedy_generate
from .result import GenerationResult, SpeculativeStats, StopAtEos
from .speculative import accepted_drafts, expected_speedup, expected_tokens_per_round, run_layers, speculative_generate

__all__ = ["GenerationResult", "SpeculativeStats", "StopAtEos", "accepted_drafts", "expected_speedup",
           "expected_tokens_per_round", "greedy_generate", "run_layers", "speculative_generate"]
