"""Draft and verify costs of self-speculative decoding on a memory-bound accelerator, from the byte counts.

In batch-1 decoding on a GPU, a step's time is the time to stream the weights it uses: running K + 1
tokens through a layer costs about as much as running one, because each weight is read once for all.
So a draft step of L layers plus the lens readout costs c = bytes(L layers + unembedding) / bytes(full step),
and the verify pass costs v = bytes(layers L..n-1 + unembedding) / bytes(full step), whatever K is.
"""

from __future__ import annotations

from ..core.architectures import ModelDims
from ..core.validation import check_int
from .charges import full_token_cost, token_cost


def memory_bound_costs(dims: ModelDims, draft_layers: int, context_len: int = 128) -> tuple[float, float]:
    """(c, v): one draft step and one verify pass as fractions of a full decoding step's bytes moved."""
    draft_layers = check_int("draft_layers", draft_layers, low=1, high=dims.n_layers - 1)
    full = full_token_cost(dims, context_len).bytes_moved
    draft = token_cost(dims, layers_run=draft_layers, context_len=context_len).bytes_moved  # layers + readout
    lower = token_cost(dims, layers_run=draft_layers, context_len=context_len, unembed=False).bytes_moved
    return draft / full, (full - lower) / full
