"""Exit controllers: one interface for the forward pass, generation and evaluation.

A controller is called by :meth:`UnrolledModel.forward` before each layer ``layer >= 1`` as
``controller(layer, resid [B, T, d], active [B, T]) -> stop [B, T]``: ``stop`` means the token
keeps the ``layer`` layers it has run. Every controller here is built from one threshold-free
*score* per token and layer, and one rule, ``score >= threshold`` (``<=`` for entropy):

==========  ============================================  ===========================
name        score                                         what a check costs
==========  ============================================  ===========================
static      the layer index (exit once ``layer >= k``)    nothing
confidence  top-1 probability under the lens              one lens (final norm + lm_head)
margin      top-1 minus top-2 probability under the lens  one lens
entropy     entropy (nats) of the lens distribution       one lens
saturation  cosine between this residual and the last     three d_model reductions
patience    consecutive checks with the same lens top-1   one lens
learned     a probe's P(lens top-1 is already final)      a few d_model reductions
==========  ============================================  ===========================

Controllers check only at ``exit_layers_allowed`` (all layers by default): fewer checks cost less.
They count every check they make, per token of the current call (``lens_checks``,
``probe_checks``, [B, T]), so the cost model can charge them. The forward calls
``controller.reset(positions)`` at the start of each call, which clears per-call state (the
previous residual, the patience streak) and gives the token positions used by CALM's
decaying threshold. ``controller.readout`` maps an exited token's residual through the lens's
translator (a tuned lens) before the model unembeds it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.metrics import entropy
from ..core.validation import check_fraction, check_int
from ..lens import LogitLens
from .probe import PROBE_REDUCTIONS, ExitProbe

CONTROLLER_NAMES = ("static", "confidence", "margin", "entropy", "saturation", "patience", "learned")
SATURATION_REDUCTIONS = 3  # h.p, |h|^2, |p|^2


class ExitController:
    """Base class: thresholding, allowed layers, check counting, per-call state.

    Args:
        threshold: the rule's threshold (see the table in the module docstring).
        lens: a :class:`~anee_lite.tuned_lens.LogitLens` or ``TunedLens``; used for checks (if the
            controller reads the lens) and for the readout of exited tokens.
        exit_layers_allowed: layers at which a token may stop (None = every layer 1..n_layers-1).
        decay_tau: CALM's decaying threshold: at position t the threshold is
            ``clip(0.9 * threshold + 0.1 * exp(-decay_tau * t / decay_horizon), 0, 1)``
            (None = constant). Only for rules where a higher score means "exit".
        decay_horizon: N in the formula above, in tokens.
    """

    name = "base"
    higher_exits = True  # stop when score >= threshold (False: score <= threshold)
    lens_checks_per_check = 0
    probe_checks_per_check = 0

    def __init__(self, threshold: float, lens: LogitLens, *, exit_layers_allowed=None,
                 decay_tau: float | None = None, decay_horizon: int = 256):
        n_layers = lens.model.dims.n_layers
        self.lens = lens
        self.n_layers = n_layers
        self.threshold = float(threshold)
        if math.isnan(self.threshold):
            raise ValueError("threshold must be a number, got NaN")
        allowed = range(1, n_layers) if exit_layers_allowed is None else exit_layers_allowed
        allowed = sorted({int(l) for l in allowed})
        if not allowed or allowed[0] < 1 or allowed[-1] > n_layers - 1:
            raise ValueError(f"exit_layers_allowed must be a non-empty subset of [1, {n_layers - 1}], "
                             f"got {exit_layers_allowed}")
        self.exit_layers_allowed = allowed
        if decay_tau is not None and not self.higher_exits:
            raise ValueError(f"decay_tau is only for controllers where a higher score exits, not {self.name!r}")
        if decay_tau is not None:
            decay_tau = check_fraction("decay_tau", decay_tau, high=math.inf)
        decay_horizon = check_int("decay_horizon", decay_horizon, low=1)
        self.decay_tau = decay_tau
        self.decay_horizon = decay_horizon
        self.positions: Tensor | None = None
        self.lens_checks: Tensor | None = None  # [B, T] checks made in the current call
        self.probe_checks: Tensor | None = None
        self._reset_state()  # so a controller called without reset() still has its per-call state

    # -- the forward's hooks --------------------------------------------------------------
    def reset(self, positions: Tensor | None = None) -> None:
        """Start a new forward call: clear per-call state; ``positions`` [B, T] feed the decay."""
        self.positions = positions
        self.lens_checks = None if positions is None else torch.zeros(positions.shape, dtype=torch.long,
                                                                      device=positions.device)
        self.probe_checks = None if positions is None else torch.zeros_like(self.lens_checks)
        self._reset_state()

    def __call__(self, layer: int, resid: Tensor, active: Tensor) -> Tensor:
        if self.lens_checks is None:
            self.lens_checks = torch.zeros(active.shape, dtype=torch.long, device=active.device)
            self.probe_checks = torch.zeros_like(self.lens_checks)
        stop = torch.zeros(active.shape, dtype=torch.bool, device=active.device)
        if layer in self.exit_layers_allowed:
            stop = self.decide(self.score(layer, resid)) & active  # [B, T]
            self._count(active)
        self.observe(layer, resid)
        return stop

    def readout(self, resid: Tensor, exit_layers: Tensor) -> Tensor:
        """[B, T, d] residuals of tokens that stopped at ``exit_layers`` [B, T] -> what to unembed."""
        return self.lens.readout(resid, exit_layers)

    # -- the rule ---------------------------------------------------------------------------
    def score(self, layer: int, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T] the threshold-free signal at ``layer``."""
        raise NotImplementedError

    def observe(self, layer: int, resid: Tensor) -> None:
        """Called after every layer's decision, checked or not (e.g. to remember the residual)."""

    def decide(self, score: Tensor, threshold: float | None = None) -> Tensor:
        """[..., B, T] scores -> bool stops under ``threshold`` (default: this controller's)."""
        thr = self.threshold_at(self.threshold if threshold is None else threshold, score)
        return score >= thr if self.higher_exits else score <= thr

    def threshold_at(self, threshold: float, like: Tensor):
        """The threshold per token: a constant, or CALM's decay over the token positions."""
        if self.decay_tau is None or self.positions is None:
            return threshold
        t = self.positions.to(like.device, like.dtype)  # [B, T]
        return (0.9 * threshold + 0.1 * torch.exp(-self.decay_tau * t / self.decay_horizon)).clamp(0, 1)

    def _reset_state(self) -> None:
        pass

    def _count(self, active: Tensor) -> None:
        self.lens_checks += active.long() * self.lens_checks_per_check
        self.probe_checks += active.long() * self.probe_checks_per_check

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(threshold={self.threshold:g}, lens={self.lens.kind}, "
                f"exit_layers_allowed={self.exit_layers_allowed})")


class StaticExit(ExitController):
    """The seed's static budget: every token stops at the first allowed layer >= ``threshold``."""

    name = "static"

    def score(self, layer, resid):
        return torch.full(resid.shape[:2], float(layer), device=resid.device)  # [B, T]

    def threshold_at(self, threshold, like):
        return threshold  # a layer count does not decay


class _LensController(ExitController):
    """Reads the lens distribution at every check: each check is one lens evaluation."""

    lens_checks_per_check = 1

    def log_probs(self, layer: int, resid: Tensor) -> Tensor:
        return self.lens.logits(layer, resid).float().log_softmax(-1)  # [B, T, d] -> [B, T, V]


class ConfidenceExit(_LensController):
    """Stop when the lens's top-1 probability reaches ``threshold`` (0..1)."""

    name = "confidence"

    def score(self, layer, resid):
        return self.log_probs(layer, resid).max(-1).values.exp()  # [B, T]


class MarginExit(_LensController):
    """Stop when top-1 minus top-2 probability reaches ``threshold`` (0..1)."""

    name = "margin"

    def score(self, layer, resid):
        top2 = self.log_probs(layer, resid).topk(2, dim=-1).values.exp()  # [B, T, 2]
        return top2[..., 0] - top2[..., 1]


class EntropyExit(_LensController):
    """Stop when the lens distribution's entropy (nats) falls to ``threshold`` or below."""

    name = "entropy"
    higher_exits = False

    def score(self, layer, resid):
        return entropy(self.log_probs(layer, resid))  # [B, T, V] -> [B, T]


class SaturationExit(ExitController):
    """Stop when the residual barely turns: cosine with the previous layer's residual >= ``threshold``.

    No lens: each check is three d_model-length reductions. At the first layer there is no
    previous residual (the forward does not show the embeddings), so no token stops there.
    """

    name = "saturation"
    probe_checks_per_check = SATURATION_REDUCTIONS

    def _reset_state(self):
        self.prev: Tensor | None = None

    def score(self, layer, resid):
        if self.prev is None:
            return torch.full(resid.shape[:2], -math.inf, device=resid.device)
        return torch.nn.functional.cosine_similarity(resid, self.prev, dim=-1)  # [B, T]

    def observe(self, layer, resid):
        self.prev = resid


class PatienceExit(_LensController):
    """PABEE: stop once the lens top-1 has stayed the same for ``threshold`` consecutive checks."""

    name = "patience"

    def _reset_state(self):
        self.prev_top: Tensor | None = None
        self.streak: Tensor | None = None

    def score(self, layer, resid):
        top = self.lens.logits(layer, resid).argmax(-1)  # [B, T]
        if self.prev_top is None:
            self.streak = torch.zeros(top.shape, device=resid.device)
        else:
            self.streak = torch.where(top == self.prev_top, self.streak + 1, torch.zeros_like(self.streak))
        self.prev_top = top
        return self.streak

    def threshold_at(self, threshold, like):
        return threshold  # a count of layers does not decay


class LearnedExit(SaturationExit):
    """Stop when a learned probe's P(lens top-1 is already final) reaches ``threshold``.

    Args:
        probe: an :class:`~anee_lite.exit_probe.ExitProbe`; exits are allowed only at its layers.
    """

    name = "learned"
    probe_checks_per_check = PROBE_REDUCTIONS

    def __init__(self, threshold, lens, probe: ExitProbe, *, exit_layers_allowed=None, **kwargs):
        allowed = probe.layers if exit_layers_allowed is None else exit_layers_allowed
        missing = sorted(set(allowed) - set(probe.layers))
        if missing:
            raise ValueError(f"exit_layers_allowed must be layers the probe was trained at {probe.layers}, "
                             f"got extra layers {missing}")
        if probe.lens_kind != lens.kind:
            raise ValueError(f"the probe was trained for a {probe.lens_kind} lens readout, got a {lens.kind} lens")
        self.probe = probe
        super().__init__(threshold, lens, exit_layers_allowed=allowed, **kwargs)

    def score(self, layer, resid):
        prev = resid if self.prev is None else self.prev
        return self.probe.prob(layer, resid.float(), prev.float())  # [B, T]


CONTROLLERS = {cls.name: cls for cls in (StaticExit, ConfidenceExit, MarginExit, EntropyExit, SaturationExit,
                                         PatienceExit, LearnedExit)}

# Thresholds to start from before calibration; static's is a fraction of the layers, patience's a count.
DEFAULT_THRESHOLDS = {"static": 0.7, "confidence": 0.5, "margin": 0.3, "entropy": 1.5, "saturation": 0.95,
                      "patience": 2, "learned": 0.8}


def make_controller(name: str, lens: LogitLens, threshold: float | None = None, *, probe: ExitProbe | None = None,
                    exit_layers_allowed=None, **kwargs) -> ExitController:
    """Build a controller by name.

    Args:
        name: one of :data:`CONTROLLER_NAMES`.
        lens: the lens for checks and readout (``LogitLens(model)`` or a ``TunedLens``).
        threshold: None = a default (static's default is 70% of the layers).
        probe: required for ``learned``.
        exit_layers_allowed: layers where tokens may stop (None: every layer, or the probe's).
    """
    if name not in CONTROLLERS:
        raise ValueError(f"controller must be one of {list(CONTROLLER_NAMES)}, got {name!r}")
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[name]
        if name == "static":
            threshold = round(threshold * lens.model.dims.n_layers)
    if name == "learned":
        if probe is None:
            raise ValueError("the 'learned' controller needs a probe (train one with anee_lite.exit_probe.train_probe)")
        return LearnedExit(threshold, lens, probe, exit_layers_allowed=exit_layers_allowed, **kwargs)
    return CONTROLLERS[name](threshold, lens, exit_layers_allowed=exit_layers_allowed, **kwargs)
