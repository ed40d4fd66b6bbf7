"""Does skipping weight rows pay on this machine? Matrix-vector products and decoding, timed side by side.

Activation sparsity saves memory traffic only if the product really reads fewer rows of the
weight, and only if choosing the kept rows (a compare and a ``nonzero`` per input) costs less than
the rows it saves. :func:`matvec_table` times, for one weight shape, the dense product against two
ways of reading only the kept rows at each sparsity, the selection included:

* ``rows``: :func:`anee_lite.core.masks.sparse_matvec` (``embedding_bag`` reads the kept rows in place),
* ``gather``: ``x[kept] @ W.index_select(0, kept)`` (copies the kept rows first, then multiplies).

:func:`decode_speed` times the user's path, ``ANEEWrapper.generate`` with a KV cache, at several
activation sparsities in rotating order (so a change in the machine's load hits every setting).
"""

from __future__ import annotations

import statistics
import time

import torch

from ..core.masks import ROW_SKIP_MIN_SPARSITY, sparse_matvec
from ..core.validation import as_list, check_fraction, check_int

COPIES = 24  # distinct weights cycled through, so each product streams from memory as in decoding


def _median_seconds(fn, repeats: int, inner: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


@torch.no_grad()
def matvec_table(d_in: int, d_out: int, fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), *,
                 matrix: str = "W_mlp_in", repeats: int = 7, inner: int = 50, seed: int = 0) -> list[dict]:
    """Microseconds per product of one input vector with a [d_in, d_out] weight, dense and row-skipping.

    Args:
        d_in, d_out: the weight's shape ([in, out], the library's layout).
        fractions: input sparsities to time, each in [0, 1).
        matrix: which of ``LINEAR_INPUTS`` this shape is (it decides what the forward runs).
        repeats, inner: the median over ``repeats`` timings of ``inner`` products each.
        seed: for the random weights and input.

    Returns:
        One dict per fraction: ``fraction``, ``dense_us``, ``rows_us`` and ``gather_us`` (selection
        included), ``select_us`` (the selection alone), ``rows_speedup`` and ``gather_speedup``
        (dense time over theirs), and ``used``: what the forward runs at that sparsity ("rows" from
        ``ROW_SKIP_MIN_SPARSITY[matrix]`` on, else "dense").
    """
    d_in, d_out = check_int("d_in", d_in, low=1), check_int("d_out", d_out, low=1)
    repeats, inner = check_int("repeats", repeats, low=1), check_int("inner", inner, low=1)
    fractions = [check_fraction("fractions", f) for f in as_list("fractions", fractions, "a list of sparsities")]
    if matrix not in ROW_SKIP_MIN_SPARSITY:
        raise ValueError(f"matrix must be one of {list(ROW_SKIP_MIN_SPARSITY)}, got {matrix!r}")
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(d_in, d_out, generator=gen) for _ in range(COPIES)]  # [d_in, d_out] each
    x = torch.randn(d_in, generator=gen)  # [d_in]
    turn = iter(range(1 << 62))

    def weight():
        return weights[next(turn) % COPIES]

    dense_us = 1e6 * _median_seconds(lambda: x @ weight(), repeats, inner)  # [d_in] @ [d_in, d_out]
    rows = []
    for fraction in fractions:
        threshold = float(x.abs().quantile(fraction)) if fraction > 0 else 0.0

        def select(threshold=threshold):
            return (x.abs() >= threshold).nonzero()[:, 0]  # [n_kept]

        def by_rows():
            return sparse_matvec(x, weight(), select())  # reads the kept rows in place

        def by_gather():
            kept = select()
            return x[kept] @ weight().index_select(0, kept)  # [n] @ [n, d_out], rows copied first

        r_us = 1e6 * _median_seconds(by_rows, repeats, inner)
        g_us = 1e6 * _median_seconds(by_gather, repeats, inner)
        rows.append({"fraction": fraction, "dense_us": dense_us, "rows_us": r_us, "gather_us": g_us,
                     "select_us": 1e6 * _median_seconds(select, repeats, inner), "rows_speedup": dense_us / r_us,
                     "gather_speedup": dense_us / g_us,
                     "used": "rows" if fraction >= ROW_SKIP_MIN_SPARSITY[matrix] else "dense"})
    return rows


def decode_speed(wrapper, prompt: str, fractions, *, max_new_tokens: int = 24, rounds: int = 5) -> dict:
    """Median seconds per decoded token of ``wrapper.generate`` at each activation sparsity, in rotating order.

    Args:
        wrapper: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the prompt (its prefill is not counted: the first step's time is left out).
        fractions: activation sparsities; 0 is the dense model.
        max_new_tokens: tokens per run (>= 2).
        rounds: runs per fraction; round r starts at fraction r, so each sees the machine's states.

    Returns:
        {fraction: {"seconds_per_token", "speedup" (over fraction 0 if timed, else None), "text"}}.
    """
    fractions = [check_fraction("fractions", f) for f in as_list("fractions", fractions, "a list of sparsities")]
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=2)
    rounds = check_int("rounds", rounds, low=1)
    for f in fractions:
        if f:
            wrapper.activation_thresholds(f)  # loaded or calibrated before any timing
    steps: dict[float, list[float]] = {f: [] for f in fractions}
    texts = {}
    for r in range(rounds):
        for f in fractions[r % len(fractions):] + fractions[:r % len(fractions)]:
            masks = {"activation_sparsity": f} if f else None
            result = wrapper.generate(prompt=prompt, max_new_tokens=max_new_tokens, masks=masks, return_result=True)
            steps[f] += result.step_times[1:]  # the first step is the prompt's prefill
            texts[f] = wrapper.tokenizer.decode(result.sequences[0, result.prompt_length:].tolist())
    per_token = {f: statistics.median(s) for f, s in steps.items()}
    dense = per_token.get(0.0)
    return {f: {"seconds_per_token": t, "speedup": None if dense is None else dense / t, "text": texts[f]}
            for f, t in per_token.items()}
