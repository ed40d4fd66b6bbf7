"""Measured time of one decoder layer and of the unembedding, to compare with the cost model."""

from __future__ import annotations

import statistics
import time

import torch

from ..core.architectures.base import linear
from ..core.model import ForwardCall
from ..core.validation import check_flags, check_int
from ..decoding import greedy_generate
from .charges import BYTES_PER_PARAM


@torch.no_grad()
def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run (first calls pay allocations)."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


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

    return (median_seconds(all_layers, repeats) / dims.n_layers,
            median_seconds(lambda: model.logits_from_resid(resid), repeats))


@torch.no_grad()
def decode_step_seconds(model, input_ids: torch.Tensor, depths, new_tokens: int = 8,
                        rounds: int = 3) -> tuple[dict[int, float], float]:
    """Median seconds of one decoding step at each static exit depth, and of the unembedding alone, in one run.

    Every round decodes ``new_tokens`` greedy tokens at each depth (in a rotating order) and times the
    final norm + unembedding on its own in between, so all the numbers share the same machine load.
    A line fitted through the depths (:func:`fit_step_time`) then splits a step into a per-layer part
    and a fixed part; the unembedding timed here is one piece of that fixed part.

    Args:
        model: an :class:`~anee_lite.core.model.UnrolledModel`.
        input_ids: [1, T] prompt ids.
        depths: exit depths to time, each in [1, n_layers].
        new_tokens: tokens decoded per depth and round (the first, which also reads the prompt, is not timed), >= 2.
        rounds: passes over all the depths, >= 1.

    Returns:
        ``({depth: seconds per step}, unembedding seconds)``, medians.
    """
    depths = [check_int("depths", L, low=1, high=model.dims.n_layers) for L in depths]
    if not depths:
        raise ValueError("depths must name at least one exit depth")
    new_tokens = check_int("new_tokens", new_tokens, low=2)
    rounds = check_int("rounds", rounds, low=1)
    resid = torch.randn(1, 1, model.dims.d_model, device=model.device)  # [1, 1, d]
    steps: dict[int, list[float]] = {L: [] for L in depths}
    unembed: list[float] = []
    model.logits_from_resid(resid)  # warm-up
    for r in range(rounds):
        for L in depths[r % len(depths):] + depths[:r % len(depths)]:
            run = greedy_generate(model, input_ids, max_new_tokens=new_tokens, exit_layers=L)
            steps[L].extend(run.step_times[1:])
            start = time.perf_counter()
            model.logits_from_resid(resid)
            unembed.append(time.perf_counter() - start)
    return {L: statistics.median(s) for L, s in steps.items()}, statistics.median(unembed)


def fit_step_time(depths, seconds) -> tuple[float, float]:
    """Least-squares line ``seconds = fixed + L * per_layer`` through step times at several depths.

    Returns:
        ``(fixed, per_layer)``: what a step pays whatever its depth (unembedding, Python, sampling), and
        what each layer adds.
    """
    x = torch.tensor([float(L) for L in depths], dtype=torch.float64)
    y = torch.tensor([float(s) for s in seconds], dtype=torch.float64)
    if x.numel() < 2 or x.numel() != y.numel() or bool((x == x[0]).all()):
        raise ValueError("fit_step_time needs step times at two or more different depths, one per depth")
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return float(y.mean()) - slope * float(x.mean()), slope


def matmul_flops_and_bytes(n_rows: int, d_in: int, d_out: int) -> tuple[int, int]:
    """FLOPs and fp32 bytes moved by ``x [n_rows, d_in] @ W [d_in, d_out]``: the weights are read once."""
    n_rows, d_in, d_out = (check_int(n, v, low=1) for n, v in (("n_rows", n_rows), ("d_in", d_in), ("d_out", d_out)))
    return 2 * n_rows * d_in * d_out, BYTES_PER_PARAM * (d_in * d_out + n_rows * (d_in + d_out))


@torch.no_grad()
def matmul_seconds(n_rows: int, weight: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of ``x [n_rows, d_in] @ weight [d_in, d_out]`` for a random ``x``, as the forward multiplies.

    At ``n_rows=1`` (one decoding token) every weight is used once; with more rows the same weights
    serve many tokens, so the FLOPs grow with ``n_rows`` while the bytes barely do.
    """
    n_rows = check_int("n_rows", n_rows, low=1)
    repeats = check_int("repeats", repeats, low=1)
    x = torch.randn(n_rows, weight.shape[0], dtype=weight.dtype, device=weight.device)  # [n_rows, d_in]
    return median_seconds(lambda: linear(x, weight), repeats)  # one row: split-K over the cores


@torch.no_grad()
def step_products_seconds(model, n_rows: int = 1, repeats: int = 15, unembed: bool = True) -> float:
    """Median seconds of one pass of ``n_rows`` rows through every matrix a full-depth decoding step multiplies.

    Each layer's four products (``W_QKV``, ``W_O``, ``W_mlp_in``, ``W_out``) and the unembedding, in the
    forward's order, through the forward's own :func:`~anee_lite.core.architectures.base.linear`, on the
    model's own weights (so they stream from memory as in a real step) and nothing else: no norms,
    attention, cache or Python between them. A decoding step cannot be faster than this with these
    products; the rest of its time is everything else it does.

    Args:
        model: an :class:`~anee_lite.core.model.UnrolledModel`.
        n_rows: rows multiplied at once (1 = one decoding token), >= 1.
        repeats: timed passes (the median is returned), >= 1.
        unembed: include the unembedding (a token caught up beside the next one needs no logits).
    """
    n_rows = check_int("n_rows", n_rows, low=1)
    repeats = check_int("repeats", repeats, low=1)
    check_flags(unembed=unembed)
    matrices = [w for b in model.arch.blocks for w in (b.W_QKV, b.W_O, b.W_mlp_in, b.W_out)]
    if unembed:
        matrices.append(model.arch.W_U)
    inputs = [torch.randn(n_rows, w.shape[0], dtype=w.dtype, device=w.device) for w in matrices]  # [R, in] each

    def one_pass():
        for x, w in zip(inputs, matrices):
            linear(x, w)  # [R, in] @ [in, out] -> [R, out]

    return median_seconds(one_pass, repeats)  # after one warm-up pass
