"""Choosing a controller's threshold: replayed agreement/cost curves on calibration text.

Where evaluation lives: :mod:`anee_lite.core.metrics` holds pure functions on logits (agreement,
KL, perplexity); this module *chooses* thresholds; :mod:`anee_lite.adaptive.evaluate` *measures*
a controller (or the seed's budget) by really decoding a text.

Sweeping thresholds with a real forward per candidate would run the model dozens of times. We
*replay* instead: one full-depth forward per chunk gives the residual after every layer; a
controller's score at every allowed layer is computed once; any threshold then gives each token's
exit layer (the first allowed layer whose score passes), its checks and its readout's top-1, in
microseconds. A replay sees the full model's residuals, while in a real early-exit forward later
tokens attend to the exited tokens' frozen states; :mod:`anee_lite.adaptive.evaluate` reports the real thing.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import as_list, check_chunks, check_int
from ..cost import cost_fraction, early_exit_cost
from .controllers import ExitController
from .guarantee import check_target_agreement


def text_chunks(tokenizer, text: str, *, max_tokens: int = 512, chunk: int = 256) -> list[Tensor]:
    """Tokenize ``text`` and cut its first ``max_tokens`` tokens into [1, <= chunk] pieces."""
    if not isinstance(text, str):
        hint = ": decode it first, e.g. text.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"text must be a str, got {type(text).__name__}{hint}")
    if not text.strip():
        raise ValueError("text must be a non-empty string (got an empty text)")
    max_tokens = check_int("max_tokens", max_tokens, low=2)
    chunk = check_int("chunk", chunk, low=2)
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a HuggingFace tokenizer (callable on a string), "
                        f"got {type(tokenizer).__name__}")
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens]  # [1, T]
    if ids.shape[1] < 2:
        raise ValueError(f"text must hold at least 2 tokens, got {ids.shape[1]}")
    return [c for c in ids.split(chunk, dim=1) if c.shape[1] >= 2]


@dataclass
class Replay:
    """Full-depth residuals of some text, kept to replay controllers. N = tokens in all chunks."""

    model: UnrolledModel
    stacks: list[Tensor]  # per chunk, [n_layers + 1, T, d] residual before layer 0 and after each layer
    final_top1: Tensor  # [N]
    positions: Tensor  # [N] position inside its chunk
    chunk_ids: Tensor  # [N]
    _tops: dict = field(default_factory=dict)  # (lens id, layer) -> [N] readout top-1

    @property
    def n_tokens(self) -> int:
        return int(self.final_top1.shape[0])

    def readout_top1(self, lens, layer: int) -> Tensor:
        """[N] top-1 of ``lens`` at ``layer`` (the model's own output at n_layers)."""
        if layer == self.model.dims.n_layers:
            return self.final_top1
        key = (id(lens), layer)
        if key not in self._tops:
            self._tops[key] = torch.cat([lens.logits(layer, s[layer]).argmax(-1) for s in self.stacks])
        return self._tops[key]


@torch.no_grad()
def build_replay(model: UnrolledModel, chunks: list[Tensor]) -> Replay:
    """One full-depth forward per [1, T] chunk, keeping every layer's residual."""
    check_unrolled(model)
    chunks = check_chunks("chunks", chunks, model.dims.d_vocab)
    stacks, tops, pos, cid = [], [], [], []
    for i, ids in enumerate(chunks):
        out = model.forward(ids, return_resid=True)
        stacks.append(out.resid_stack()[:, 0])  # [L + 1, 1, T, d] -> [L + 1, T, d]
        tops.append(out.logits[0].argmax(-1))  # [T]
        pos.append(torch.arange(ids.shape[1]))
        cid.append(torch.full((ids.shape[1],), i))
    return Replay(model, stacks, torch.cat(tops), torch.cat(pos), torch.cat(cid))


@torch.no_grad()
def replay_scores(replay: Replay, controller: ExitController) -> Tensor:
    """[n_layers, N] the controller's score at each allowed layer (NaN elsewhere), state carried layer to layer."""
    n = replay.model.dims.n_layers
    per_chunk = []
    for stack in replay.stacks:
        T = stack.shape[1]
        controller.reset(torch.arange(T)[None])
        scores = torch.full((n, T), float("nan"))
        for layer in range(1, n):
            resid = stack[layer][None]  # [1, T, d]
            if layer in controller.exit_layers_allowed:
                scores[layer] = controller.score(layer, resid)[0].float()
            controller.observe(layer, resid)
        per_chunk.append(scores)
    controller.reset()  # drop the last chunk's state
    return torch.cat(per_chunk, dim=1)


def simulate_exits(controller: ExitController, scores: Tensor, positions: Tensor, threshold: float) -> Tensor:
    """[N] exit layer of each token for one threshold: the first allowed layer whose score passes."""
    n = controller.n_layers
    exits = torch.full(scores.shape[1:], n, dtype=torch.long)
    for layer in controller.exit_layers_allowed:
        running = exits == n
        stop = controller.decide(scores[layer][None], threshold, positions[None])[0] & running
        exits = torch.where(stop, torch.full_like(exits, layer), exits)
    return exits


def check_thresholds(thresholds) -> list[float]:
    """Candidate thresholds: a non-empty iterable of real numbers, none NaN (it would never pass nor fail)."""
    items = as_list("thresholds", thresholds, "a list of numbers")
    if not items:
        raise ValueError("thresholds must hold at least one candidate")
    for t in items:
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"thresholds must hold numbers, got {t!r} ({type(t).__name__})")
        if math.isnan(t):
            raise ValueError("thresholds must not hold NaN (no score passes or fails it)")
    return [float(t) for t in items]


@dataclass
class CurvePoint:
    """One threshold's replayed result."""

    threshold: float
    agreement: float
    cost_fraction: float
    mean_layers_fraction: float


def sweep(replay: Replay, controller: ExitController, thresholds=None, scores: Tensor | None = None) -> list[CurvePoint]:
    """Replayed agreement and cost for each threshold (default: candidates from the scores' quantiles)."""
    if not isinstance(replay, Replay):
        raise TypeError(f"replay must be the Replay that build_replay(model, chunks) returns, got {type(replay).__name__}")
    if not isinstance(controller, ExitController):
        raise TypeError(f"controller must be an ExitController (e.g. make_controller('confidence', lens)), "
                        f"got {type(controller).__name__}")
    scores = replay_scores(replay, controller) if scores is None else scores
    thresholds = controller.candidate_thresholds(scores) if thresholds is None else check_thresholds(thresholds)
    lens, n = controller.lens, controller.n_layers
    tops = torch.stack([replay.readout_top1(lens, l) if l in controller.exit_layers_allowed or l == n
                        else replay.final_top1 for l in range(n + 1)])  # [n + 1, N]
    points = []
    for thr in thresholds:
        exits = simulate_exits(controller, scores, replay.positions, float(thr))
        agree = float((tops.gather(0, exits[None])[0] == replay.final_top1).float().mean())
        spent, full = early_exit_cost(replay.model.dims, exits, replay.positions, replay.chunk_ids,
                                      controller.charges)
        points.append(CurvePoint(float(thr), agree, cost_fraction(spent, full), float(exits.float().mean()) / n))
    return points


@dataclass
class CalibrationResult:
    """The cheapest threshold whose replayed agreement on the calibration text reaches the target."""

    controller: str
    threshold: float
    target: float
    agreement: float
    cost_fraction: float
    met: bool  # False: no threshold reached the target; the most agreeing one was taken
    curve: list[CurvePoint]


def calibrate(replay: Replay, controller: ExitController, target_agreement: float = 0.9) -> CalibrationResult:
    """Set ``controller.threshold`` to the cheapest one reaching ``target_agreement`` on the replayed text.

    Args:
        replay: :func:`build_replay` of the calibration text.
        target_agreement: top-1 agreement with the full model to reach, in (0, 1].
    """
    target = check_target_agreement(target_agreement)
    curve = sweep(replay, controller)
    ok = [p for p in curve if p.agreement >= target - 1e-12]
    best = min(ok, key=lambda p: p.cost_fraction) if ok else max(curve, key=lambda p: (p.agreement, -p.cost_fraction))
    controller.threshold = best.threshold
    return CalibrationResult(controller.name, best.threshold, target, best.agreement, best.cost_fraction,
                             bool(ok), curve)


def pareto_front(curve: list[CurvePoint]) -> list[CurvePoint]:
    """Points no other point beats on both agreement (higher) and cost (lower), by increasing cost."""
    front, best = [], -1.0
    for p in sorted(curve, key=lambda p: (p.cost_fraction, -p.agreement)):
        if p.agreement > best:
            front.append(p)
            best = p.agreement
    return front


def best_at_cost(curve: list[CurvePoint], max_cost: float) -> CurvePoint | None:
    """The most agreeing point that costs at most ``max_cost`` of the full model (None if none does)."""
    ok = [p for p in curve if p.cost_fraction <= max_cost]
    return max(ok, key=lambda p: p.agreement) if ok else None
