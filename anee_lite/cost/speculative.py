"""Draft and verify costs of self-speculative decoding on a memory-bound accelerator, from the byte counts.

In batch-1 decoding on a GPU, a step's time is the time to stream the weights it uses: running K + 1
tokens through a layer costs about as much as running one, because each weight is read once for all.
A draft step runs L layers and the lens readout: c = bytes(L layers + unembedding) / bytes(full step).
The verify pass needs the last draft's layers below L (the draft never ran them for it) and then layers
L..n-1 and the unembedding for all K + 1 tokens: every weight once, so v = 1 whatever L and K are,
plus the extra keys and values the K + 1 queries read, which we leave out (a few percent at short contexts).
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
    return draft / full, 1.0  # the verify pass streams every weight once, like one full step
