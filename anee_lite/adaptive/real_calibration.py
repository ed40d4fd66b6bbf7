"""Calibration on the real decoding path: thresholds chosen by cached token-by-token decoding, with a guarantee.

The replay of :mod:`anee_lite.adaptive.calibration` scores every layer on the *full* model's
residuals. In real decoding a token that exits early also changes what later tokens see: under
state propagation (``kv_fill="propagate"``, :mod:`anee_lite.core.cache`) they attend to keys and
values made from its frozen residual and drift; under catch-up (``"catch_up"``, the default here)
its skipped layers run later and only the exiting tokens themselves can disagree. Here each
candidate threshold is measured on the exact path :func:`anee_lite.adaptive.evaluate.decode_teacher_forced`
measures: the calibration text is teacher-forced token by token through the cached forward with the
controller deciding per token, under the ``kv_fill`` you will decode with.

To make that affordable, one batched forward runs many decodings at once: row ``(j, r)`` of the
batch decodes chunk ``r`` of the text under candidate threshold ``j`` (each row's threshold is its
own, so each row is exactly the batch-1 decoding of that chunk; rows never see each other). The
full model's top-1s come from one full-depth forward per chunk, shared by every threshold.
The threshold is then picked by fixed-sequence testing with an exact binomial lower bound
(:mod:`anee_lite.adaptive.guarantee`); with ``speed_check_tokens``, it is kept only if decoding with it
is measured faster than the full model on this machine, and exit is switched off otherwise
(:func:`exit_that_pays`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.cache import CONTROLLER_KV_FILL, check_kv_fill
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_chunks, check_int
from ..cost import bytes_fraction, cost_fraction, early_exit_cost
from .calibration import build_replay, check_thresholds, sweep
from .controllers import ExitController
from .guarantee import CandidateThreshold, check_delta, check_target_agreement, effective_tokens, fixed_sequence_select

# Calibration tokens decoded at batch 1 to check that the chosen exit is faster than the full model (evaluate()'s
# and the CLI's default; about 5 s on SmolLM2-135M here, each token decoded twice). On 128 tokens the measured ratio
# of one threshold moved by up to 0.05 between runs (1.01 and 1.06): a choice that close to 1 saves too little to matter.
SPEED_CHECK_TOKENS = 128


@contextmanager
def row_thresholds(controller: ExitController, thresholds: Tensor):
    """Give batch row b the threshold ``thresholds[b]`` ([B]) while the block runs; restore after."""
    saved = controller.threshold
    controller.threshold = thresholds[:, None]  # [B, 1]: broadcasts over the [B, T] scores
    try:
        yield controller
    finally:
        controller.threshold = saved


def order_safest_first(controller: ExitController, thresholds) -> list[float]:
    """Thresholds from the one that exits least to the one that exits most (duplicates dropped)."""
    return sorted({float(t) for t in thresholds}, reverse=controller.higher_exits)


@torch.no_grad()
def full_top1(model: UnrolledModel, chunks: list[Tensor]) -> list[Tensor]:
    """Per chunk, [T] the full model's top-1 at every position (one full-depth forward per chunk)."""
    return [model.forward(ids).logits[0].argmax(-1) for ids in chunks]  # [1, T] -> [T]


@torch.no_grad()
def decode_rows(model: UnrolledModel, ids: Tensor, controller: ExitController, thresholds: Tensor,
                progress=None, kv_fill: str = CONTROLLER_KV_FILL) -> dict[str, Tensor]:
    """Teacher-force ``ids`` [R, T] token by token under each threshold, all as one batch.

    Args:
        ids: R chunks of T tokens, each decoded from an empty cache.
        thresholds: [J] one threshold per decoding.
        progress: a tqdm bar to advance by one per decoded position (optional).
        kv_fill: how exited tokens' deeper keys/values are filled (``UnrolledModel.forward``).

    Returns:
        ``top1``, ``exits``, ``checks`` and ``extra_lens_checks`` (see
        :class:`~anee_lite.adaptive.controllers.ExitController`), each [J, R, T].
    """
    R, T = ids.shape
    J = thresholds.shape[0]
    rows = ids.repeat(J, 1)  # [J * R, T]; row j * R + r is chunk r under threshold j
    per_row = thresholds.repeat_interleave(R)  # [J * R]
    out = {k: [] for k in ("top1", "exits", "checks", "extra_lens_checks")}
    cache = None
    with row_thresholds(controller, per_row):
        for t in range(T):
            step = model.forward(rows[:, t:t + 1], controller=controller, past_key_values=cache, use_cache=True,
                                 kv_fill=kv_fill)
            cache = step.past_key_values
            out["top1"].append(step.logits[:, 0].argmax(-1))  # [J * R, V] -> [J * R]
            out["exits"].append(step.stats.exit_layers[:, 0])
            extra = controller.extra_lens_checks
            out["checks"].append(controller.checks[:, 0].clone())
            out["extra_lens_checks"].append(torch.zeros_like(out["checks"][-1]) if extra is None else extra[:, 0].clone())
            if progress is not None:
                progress.update(1)
    return {k: torch.stack(v, dim=1).reshape(J, R, T) for k, v in out.items()}  # [J * R, T] -> [J, R, T]


@torch.no_grad()
def decode_teacher_forced(model: UnrolledModel, chunks: list[Tensor], controller: ExitController,
                          kv_fill: str = CONTROLLER_KV_FILL) -> dict:
    """Decode each chunk token by token, full depth and with the controller interleaved.

    ``kv_fill``: how the controller run fills exited tokens' deeper keys/values (``UnrolledModel.forward``).

    Returns:
        ``logits``/``full_logits`` [N, V], ``exits``, ``checks`` (exit checks made),
        ``extra_lens_checks`` (lens evaluations beyond what the exit layer implies), ``positions``,
        ``chunk_ids`` [N], ``seconds``/``full_seconds`` (summed step times) and ``kv_propagated``
        and ``kv_caught_up`` (what the controller run filled lazily: entries, or layers run in full).
    """
    model.forward(chunks[0][:, :1])  # warm-up: the first call pays one-off allocation costs
    rows = {k: [] for k in ("logits", "full_logits", "exits", "checks", "extra_lens_checks", "positions",
                            "chunk_ids")}
    seconds = full_seconds = 0.0
    kv = caught_up = 0
    for c, ids in enumerate(chunks):
        cache_full = cache = None
        for t in range(ids.shape[1]):
            step = ids[:, t:t + 1]  # [1, 1]
            start = time.perf_counter()
            full = model.forward(step, past_key_values=cache_full, use_cache=True)
            mid = time.perf_counter()
            out = model.forward(step, controller=controller, past_key_values=cache, use_cache=True, kv_fill=kv_fill)
            end = time.perf_counter()
            full_seconds += mid - start
            seconds += end - mid
            cache_full, cache = full.past_key_values, out.past_key_values
            kv += out.stats.kv_propagated
            caught_up += out.stats.kv_caught_up
            rows["full_logits"].append(full.logits[0, 0])
            rows["logits"].append(out.logits[0, 0])
            rows["exits"].append(int(out.stats.exit_layers[0, 0]))
            rows["checks"].append(int(controller.checks[0, 0]))
            extra = controller.extra_lens_checks
            rows["extra_lens_checks"].append(0 if extra is None else int(extra[0, 0]))
            rows["positions"].append(t)
            rows["chunk_ids"].append(c)
    result = {k: torch.stack(v) if k.endswith("logits") else torch.tensor(v) for k, v in rows.items()}
    return {**result, "seconds": seconds, "full_seconds": full_seconds, "kv_propagated": kv, "kv_caught_up": caught_up}


def measured_time_ratio(model: UnrolledModel, chunks: list[Tensor], controller: ExitController, threshold: float,
                        tokens: int, kv_fill: str = CONTROLLER_KV_FILL) -> float:
    """Wall time of decoding with ``controller`` at ``threshold`` over the full model's, on this machine.

    The first ``tokens`` tokens of ``chunks`` are decoded at batch 1 with the KV cache, the controller's
    step and the full model's interleaved (:func:`decode_teacher_forced`), so both see the same load.
    ``controller.threshold`` is restored afterwards.
    """
    tokens = check_int("tokens", tokens, low=1)
    head, left = [], tokens
    for ids in chunks:
        if left <= 0:
            break
        head.append(ids[:, :left])  # [1, <= left]
        left -= head[-1].shape[1]
    saved = controller.threshold
    controller.threshold = threshold
    try:
        run = decode_teacher_forced(model, head, controller, kv_fill)
    finally:
        controller.threshold = saved
    return run["seconds"] / run["full_seconds"]


def never_exit(controller: ExitController) -> float:
    """The threshold no score passes (``controller.stops_nobody``): +inf, or -inf where a lower score exits."""
    return math.inf if controller.higher_exits else -math.inf


def exit_that_pays(model: UnrolledModel, chunks: list[Tensor], controller: ExitController, threshold: float,
                   tokens: int, kv_fill: str = CONTROLLER_KV_FILL) -> tuple[float, dict | None]:
    """``threshold`` if decoding with it is measured faster than the full model, else the threshold that never exits.

    Exit is there to save time. Where the checks and the caught-up rows cost more than the layers the
    exits skip (on SmolLM2-135M on this project's CPU, ``learned`` calibrated for 0.90 took 1.05x the
    full model's time), the controller is switched off instead: it then makes no decision at all and
    decodes exactly as the full model does, which keeps any agreement target.

    Returns:
        (the threshold to use, what was measured: ``threshold`` checked, ``time_ratio``, ``tokens``,
        ``switched_off``); None instead of the dict when nothing was measured (``tokens`` is 0, or
        ``threshold`` already never exits).
    """
    tokens = check_int("tokens", tokens, low=0)
    never = never_exit(controller)
    if not tokens or threshold == never:
        return threshold, None
    ratio = measured_time_ratio(model, chunks, controller, threshold, tokens, kv_fill)
    pays = ratio < 1.0
    return (threshold if pays else never), {"threshold": threshold, "time_ratio": ratio, "switched_off": not pays,
                                            "tokens": min(tokens, sum(ids.shape[1] for ids in chunks))}


def candidate_grid(model: UnrolledModel, chunks: list[Tensor], controller: ExitController, target: float,
                   n_candidates: int = 8) -> list[float]:
    """``n_candidates`` thresholds worth decoding, safest first, from a cheap replay of the same chunks.

    The replay over-estimates agreement, so the real answer is at or above the replay's own
    choice: the grid spans replayed agreements from ``target`` up to 1 (no exit at all).
    """
    curve = sweep(build_replay(model, chunks), controller)
    by_thr = {p.threshold: p for p in curve}
    ordered = order_safest_first(controller, by_thr)
    feasible = [t for t in ordered if by_thr[t].agreement >= target]
    if len(feasible) <= n_candidates:
        picked = feasible
    else:
        levels = torch.linspace(1.0, target, n_candidates).tolist()
        picked = {min(feasible, key=lambda t, a=a: abs(by_thr[t].agreement - a)) for a in levels}
        picked |= {feasible[0], feasible[-1]}  # the safest and the replay's cheapest
    if not picked:  # the replay reaches the target nowhere: try the safest ones
        picked = ordered[:n_candidates]
    return order_safest_first(controller, picked)


@dataclass
class DecodedCalibration:
    """A threshold chosen by real decoding, with its guarantee.

    With probability about ``1 - delta`` (tokens treated as independent; see
    :mod:`anee_lite.adaptive.guarantee`), the chosen threshold's agreement on text like the
    calibration text is >= ``target``. ``lower_bound`` is the bound the choice rests on.
    """

    controller: str
    threshold: float
    target: float
    delta: float
    tokens: int
    agreement: float
    lower_bound: float
    cost_fraction: float
    mean_layers_fraction: float
    met: bool  # False: even the safest candidate's bound is below target; it was taken anyway
    tested: list[CandidateThreshold] = field(repr=False)
    effective_tokens: float = 0.0  # what the chosen threshold's tokens are worth as independent ones (chunks correlate)
    seconds: float = 0.0
    bytes_fraction: float = 1.0  # memory traffic against the full model's
    kv_fill: str = CONTROLLER_KV_FILL
    # exit_that_pays's measurement (None: not asked for): the passing threshold's wall time over the full model's,
    # and whether it was switched off for not being faster (the fields above then describe the full model)
    speed_check: dict | None = None

    def summary(self) -> dict:
        """The scalar fields, for JSON and tables."""
        return {k: v for k, v in vars(self).items() if k != "tested"}


def _group(chunks: list[Tensor], per_group: int):
    """Chunks of one length stacked into [R, T] groups of at most ``per_group`` rows, with their indices."""
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        by_len.setdefault(c.shape[1], []).append(i)
    for idx in by_len.values():
        for s in range(0, len(idx), per_group):
            part = idx[s:s + per_group]
            yield part, torch.cat([chunks[i] for i in part])  # [R, T]


@torch.no_grad()
def decode_thresholds(model: UnrolledModel, chunks: list[Tensor], controller: ExitController,
                      thresholds: list[float], *, batch_rows: int = 64, desc: str = "decoding",
                      final_top1: list[Tensor] | None = None, kv_fill: str = CONTROLLER_KV_FILL) -> dict:
    """Real decoding of every chunk under every threshold, as few batched decodings as ``batch_rows`` allows.

    ``final_top1``: the full model's top-1 per chunk (:func:`full_top1`), when the caller already has it.
    ``kv_fill``: how exited tokens' deeper keys/values are filled (``UnrolledModel.forward``).

    Returns:
        threshold -> chunk index -> ``top1``, ``final`` (the full model's top-1), ``exits``,
        ``checks``, ``extra_lens_checks``, each [T].
    """
    from tqdm.auto import tqdm

    check_unrolled(model)
    chunks = check_chunks("chunks", chunks, model.dims.d_vocab)
    if not isinstance(controller, ExitController):
        raise TypeError(f"controller must be an ExitController (e.g. make_controller('confidence', lens)), "
                        f"got {type(controller).__name__}")
    batch_rows = check_int("batch_rows", batch_rows, low=1)
    thresholds = check_thresholds(thresholds)
    kv_fill = check_kv_fill(kv_fill)
    if final_top1 is not None and [t.shape[-1] for t in final_top1] != [c.shape[1] for c in chunks]:
        raise ValueError("final_top1 must hold one [T] tensor per chunk, as full_top1(model, chunks) returns")
    tops = full_top1(model, chunks) if final_top1 is None else final_top1
    J = len(thresholds)
    thr_groups = [thresholds[s:s + batch_rows] for s in range(0, J, batch_rows)]
    per_group = max(1, batch_rows // min(J, batch_rows))
    plan = [(tg, part, ids) for tg in thr_groups for part, ids in _group(chunks, per_group)]
    runs: dict[float, dict[int, dict]] = {float(t): {} for t in thresholds}
    with tqdm(total=sum(ids.shape[1] for _, _, ids in plan), desc=desc, leave=False) as bar:
        for tg, part, ids in plan:
            got = decode_rows(model, ids, controller, torch.tensor(tg, dtype=torch.float32), bar, kv_fill)
            for j, thr in enumerate(tg):
                for r, c in enumerate(part):
                    runs[float(thr)][c] = {"final": tops[c], **{k: v[j, r] for k, v in got.items()}}  # [T] each
    return runs


def summarize(model: UnrolledModel, controller: ExitController, runs: dict, chunks: list[Tensor],
              which: list[int] | None = None, kv_fill: str = CONTROLLER_KV_FILL) -> list[dict]:
    """Agreement and cost per threshold of :func:`decode_thresholds` results, over chunks ``which`` (None: all).

    ``kv_fill`` must be what the decoding used: it says what the exited tokens' deeper keys/values cost.

    Returns:
        Per threshold: ``threshold``, ``agreements``, ``tokens``, ``cost_fraction`` (FLOPs, every check and
        K/V fill charged), ``bytes_fraction`` (memory traffic), ``mean_layers_fraction``, and ``chunk_agreements``/``chunk_tokens``
        per chunk (for the bound that counts effective tokens, :mod:`anee_lite.adaptive.guarantee`).
    """
    n = model.dims.n_layers
    order = sorted(range(len(chunks)) if which is None else which)
    positions = torch.cat([torch.arange(chunks[c].shape[1]) for c in order])  # [N]
    chunk_ids = torch.cat([torch.full((chunks[c].shape[1],), c) for c in order])  # [N]
    results = []
    for thr, per_chunk in runs.items():
        cat = {k: torch.cat([per_chunk[c][k] for c in order]) for k in per_chunk[order[0]]}  # [N] each
        spent, full = early_exit_cost(model.dims, cat["exits"], positions, chunk_ids, controller.charges,
                                      cat["extra_lens_checks"], controller.extra_check_translator_macs(), kv_fill)
        results.append({"threshold": thr, "agreements": int((cat["top1"] == cat["final"]).sum()),
                        "tokens": int(positions.numel()), "cost_fraction": cost_fraction(spent, full),
                        "bytes_fraction": bytes_fraction(spent, full),
                        "mean_layers_fraction": float(cat["exits"].float().mean()) / n,
                        "chunk_agreements": [int((per_chunk[c]["top1"] == per_chunk[c]["final"]).sum()) for c in order],
                        "chunk_tokens": [int(chunks[c].shape[1]) for c in order]})
    return results


def agreement_by_exit_history(runs: dict, n_layers: int) -> dict[float, dict[str, dict[str, int]]]:
    """Split each threshold's agreement by what the token and the tokens before it in its chunk did.

    A token that runs every layer can still disagree with the full model: it attends to the frozen
    keys and values that earlier exits left (state propagation). Counting it apart from the tokens that
    exited shows which of the two costs the agreement.

    Args:
        runs: what :func:`decode_thresholds` returned (threshold -> chunk -> ``top1``, ``final``, ``exits``).
        n_layers: the model's depth: a token with ``exits == n_layers`` ran every layer.

    Returns:
        threshold -> group -> ``{"tokens": n, "agreements": k}`` for the groups ``exited`` (stopped
        early), ``full_depth_clean`` (ran every layer, no earlier token of its chunk had exited) and
        ``full_depth_after_exit`` (ran every layer after an earlier token of its chunk exited).
    """
    n_layers = check_int("n_layers", n_layers, low=1)
    if not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
        raise TypeError("runs must be what decode_thresholds returned: threshold -> chunk -> tensors")
    out = {}
    for thr, per_chunk in runs.items():
        groups = {g: {"tokens": 0, "agreements": 0} for g in ("exited", "full_depth_clean", "full_depth_after_exit")}
        for run in per_chunk.values():
            early = run["exits"] < n_layers  # [T]
            agree = run["top1"] == run["final"]  # [T]
            after = (early.long().cumsum(0) - early.long()) > 0  # [T]: an earlier token of the chunk exited
            for name, where in (("exited", early), ("full_depth_clean", ~early & ~after),
                                ("full_depth_after_exit", ~early & after)):
                groups[name]["tokens"] += int(where.sum())
                groups[name]["agreements"] += int((agree & where).sum())
        out[thr] = groups
    return out


def measure_thresholds(model: UnrolledModel, chunks: list[Tensor], controller: ExitController,
                       thresholds: list[float], *, batch_rows: int = 64, desc: str = "calibrating",
                       kv_fill: str = CONTROLLER_KV_FILL) -> list[dict]:
    """Real-decoding agreement and cost of each threshold on ``chunks``, in the given order (see :func:`summarize`)."""
    runs = decode_thresholds(model, chunks, controller, thresholds, batch_rows=batch_rows, desc=desc, kv_fill=kv_fill)
    return summarize(model, controller, runs, chunks, kv_fill=kv_fill)


def calibrate_by_decoding(model: UnrolledModel, chunks: list[Tensor], controller: ExitController,
                          target_agreement: float = 0.9, *, delta: float = 0.1, thresholds=None,
                          n_candidates: int = 8, batch_rows: int = 64,
                          kv_fill: str = CONTROLLER_KV_FILL, speed_check_tokens: int = 0) -> DecodedCalibration:
    """Set ``controller.threshold`` to the cheapest one whose agreement is guaranteed on the real path.

    Args:
        model: the unrolled model.
        chunks: calibration text as [1, T] token-id chunks (:func:`~anee_lite.adaptive.calibration.text_chunks`).
        controller: the controller to calibrate (its lens, exit layers and decay are kept).
        target_agreement: top-1 agreement with the full model to guarantee, in (0, 1].
        delta: allowed probability that the chosen threshold misses the target, in (0, 1).
        thresholds: candidates to test (any order; tested safest first). None: :func:`candidate_grid`.
            For the strict Learn-then-Test guarantee pass a grid fixed before seeing the text; the
            default grid is read off a replay of the same text.
        n_candidates: size of the default grid.
        batch_rows: decodings run side by side in one forward (memory grows with it).
        kv_fill: how exited tokens' deeper keys/values are filled (``UnrolledModel.forward``; default
            ``"catch_up"``, as ``generate`` decodes with a controller); calibrate under the one you will
            decode with: the agreement of the two differs a lot.
        speed_check_tokens: if > 0, decode this many calibration tokens at batch 1 with the chosen threshold
            and at full depth, and switch exit off when it is not faster on this machine
            (:func:`exit_that_pays`; :data:`SPEED_CHECK_TOKENS` is what :func:`~anee_lite.adaptive.evaluate.evaluate`
            uses). 0 (default): choose by the cost model alone, the same on any machine.

    The cheapest passing candidate is the one with the fewest FLOPs; under ``kv_fill="catch_up"``,
    which saves no FLOPs, the one that moves the fewest bytes (weights read: what decoding pays for).
    Candidates are decoded safest first, as many at a time as ``batch_rows`` holds (``batch_rows //
    len(chunks)``, at least one), and decoding stops after the first one that fails: the walk never looks
    past it, so ``tested`` lists the candidates up to that one.
    """
    target = check_target_agreement(target_agreement)
    delta = check_delta(delta)
    n_candidates = check_int("n_candidates", n_candidates, low=1)
    batch_rows = check_int("batch_rows", batch_rows, low=1)
    kv_fill = check_kv_fill(kv_fill)
    speed_check_tokens = check_int("speed_check_tokens", speed_check_tokens, low=0)
    check_unrolled(model)
    chunks = check_chunks("chunks", chunks, model.dims.d_vocab)
    if thresholds is not None:
        thresholds = check_thresholds(thresholds)
    start = time.perf_counter()
    if thresholds is None:
        thresholds = candidate_grid(model, chunks, controller, target, n_candidates)
    ordered = order_safest_first(controller, thresholds)
    per_round = max(1, batch_rows // len(chunks))  # candidates whose decodings fit side by side in one batch
    tops = full_top1(model, chunks)  # once for every round
    tested: list[CandidateThreshold] = []
    for first in range(0, len(ordered), per_round):
        runs = decode_thresholds(model, chunks, controller, ordered[first:first + per_round], batch_rows=batch_rows,
                                 desc="calibrating", final_top1=tops, kv_fill=kv_fill)
        tested += [CandidateThreshold(lower_bound=0.0, **m)
                   for m in summarize(model, controller, runs, chunks, kv_fill=kv_fill)]
        best = fixed_sequence_select(tested, target, delta, cheapest_by=cheapest_by(kv_fill))
        if not tested[-1].passed:  # the walk stopped here: the fixed-sequence test never looks further
            break
    chosen = best if best is not None else tested[0]
    threshold, speed = exit_that_pays(model, chunks, controller, chosen.threshold, speed_check_tokens, kv_fill)
    controller.threshold = threshold
    seconds = time.perf_counter() - start
    if speed is not None and speed["switched_off"]:  # the full model itself: it agrees with itself on every token
        return DecodedCalibration(controller.name, threshold, target, delta, chosen.tokens, agreement=1.0,
                                  lower_bound=1.0, cost_fraction=1.0, mean_layers_fraction=1.0, met=True,
                                  tested=tested, effective_tokens=float(chosen.tokens), seconds=seconds,
                                  bytes_fraction=1.0, kv_fill=kv_fill, speed_check=speed)
    return DecodedCalibration(controller.name, chosen.threshold, target, delta, chosen.tokens, chosen.agreement,
                              chosen.lower_bound, chosen.cost_fraction, chosen.mean_layers_fraction,
                              met=best is not None, tested=tested,
                              effective_tokens=effective_tokens(chosen.chunk_agreements, chosen.chunk_tokens),
                              seconds=seconds, bytes_fraction=chosen.bytes_fraction, kv_fill=kv_fill,
                              speed_check=speed)


def cheapest_by(kv_fill: str) -> str:
    """What "cheapest" means when choosing a threshold: FLOPs, or under catch-up (which saves none) memory traffic."""
    return "bytes_fraction" if check_kv_fill(kv_fill) == "catch_up" else "cost_fraction"
