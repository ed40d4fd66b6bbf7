"""Measured time of one decoder layer and of the unembedding, to compare with the cost model."""

from __future__ import annotations

import statistics
import time

import torch

from ..core.model import ForwardCall
from ..core.validation import check_int


@torch.no_grad()
def layer_and_unembed_seconds(model, context_len: int, repeats: int = 5) -> tuple[float, float]:
    """Measured seconds of one decoder layer and of the final norm + unembedding, for one decoding token.

    The layers are timed all together over a KV cache of ``context_len - 1`` tokens and the total
    divided by their number, so the result is what a decoding step pays per layer at that context.
    ``L * layer + unembed`` is then the ideal step time of an exit after L layers: any more is
    overhead that does not shrink with depth.

    Args:
        model: an :class:`~anee_lite.core.model.UnrolledModel`.
        context_len: keys each layer attends over, in [2, n_ctx].
        repeats: timed runs (the median is returned), >= 1.
    """
    dims = model.dims
    context_len = check_int("context_len", context_len, low=2, high=dims.n_ctx)
    repeats = check_int("repeats", repeats, low=1)
    ids = torch.randint(0, dims.d_vocab, (1, context_len - 1), generator=torch.Generator().manual_seed(0))
    cache = model(ids.to(model.device), use_cache=True).past_key_values
    pos_info = model.arch.position_info(torch.tensor([[context_len - 1]], device=model.device))
    resid = torch.randn(1, 1, dims.d_model, device=model.device)  # [1, 1, d]

    def all_layers():
        call = ForwardCall(pos_info=pos_info, mask=None, causal=False, cache=cache.fork(),
                           active=torch.ones(1, 1, dtype=torch.bool, device=model.device))
        for layer in range(dims.n_layers):
            model.block(layer, resid, call)  # the model's own block, over a fork of the context's cache

    def seconds(fn) -> float:
        fn()  # warm-up
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    return seconds(all_layers) / dims.n_layers, seconds(lambda: model.logits_from_resid(resid))
