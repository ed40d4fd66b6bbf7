"""The exit-controller interface every controller implements, and the registry of controllers by name.

A controller turns one threshold-free *score* per token and layer into a rule, ``score >=
threshold`` (``<=`` when ``higher_exits`` is False). :class:`ExitController` implements the
forward's :class:`~anee_lite.core.controller.Controller` protocol once for all of them; a
controller only says how it scores and what one check costs:

* ``name``, ``default_threshold`` (class attributes): its registry key and where to start before
  calibration; ``higher_exits``: the rule's direction; ``decays``: whether CALM's decaying
  threshold applies (False for counts such as a layer index or a streak).
* ``score(layer, resid [B, T, d]) -> [B, T]`` (required); ``observe(layer, resid)`` after every
  layer's decision (e.g. remember the residual); ``clear_state()`` at the start of each call.
* ``candidate_thresholds(scores)``: what calibration tries (default: quantiles of the scores).
* What a check costs, charged by :func:`anee_lite.cost.token_cost` through :meth:`charges`:
  ``reads_lens = True`` makes every check one lens evaluation (final norm + unembedding, plus a
  tuned lens's translator) whose logits become the output of a token that stops there (not
  unembedded again); ``probe_macs_per_check > 0`` makes every check one cheap evaluation of that
  many multiply-adds. A token is checked at every allowed layer up to and including its exit
  layer (all of them if it runs to the end); ``checks`` [B, T] counts them during a forward call.

Register a controller with :func:`register` (a class decorator); :func:`make_controller` builds one
by name. A new controller is one class in one file of this folder (it is imported automatically).
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import torch
from torch import Tensor

from ...core.validation import as_list, check_fraction, check_int
from ...lens import LogitLens

REGISTRY: dict[str, type[ExitController]] = {}


def register(cls: type[ExitController]) -> type[ExitController]:
    """Class decorator: make ``cls`` buildable by its ``name`` (``make_controller``, the CLI, evaluate)."""
    if REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"a controller named {cls.name!r} is already registered ({REGISTRY[cls.name].__name__})")
    REGISTRY[cls.name] = cls
    return cls


def controller_names() -> tuple[str, ...]:
    """The registered controllers' names, in registration order."""
    return tuple(REGISTRY)


def controller_class(name: str) -> type[ExitController]:
    """The registered class called ``name`` (the one place a controller name is checked)."""
    if name not in REGISTRY:
        raise ValueError(f"controller must be one of {list(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


def allowed_exit_layers(exit_layers_allowed, n_layers: int) -> list[int]:
    """``exit_layers_allowed`` (None: every layer 1..n_layers-1) as a sorted list of distinct layer indices.

    Each entry must be an integer in [1, n_layers - 1]: ``int()`` would have read 1.7 as 1, True as 1
    and the string "12" as the layers 1 and 2.
    """
    if exit_layers_allowed is None:
        return list(range(1, n_layers))
    items = as_list("exit_layers_allowed", exit_layers_allowed, f"a list of layer indices in [1, {n_layers - 1}]")
    if not items:
        raise ValueError(f"exit_layers_allowed must be a non-empty subset of [1, {n_layers - 1}], got none")
    for layer in items:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise TypeError(f"exit_layers_allowed must hold integer layer indices, got {layer!r}")
        if not 1 <= layer <= n_layers - 1:
            raise ValueError(f"exit_layers_allowed must be a non-empty subset of [1, {n_layers - 1}], "
                             f"got {items}")
    return sorted({int(layer) for layer in items})


class ExitController:
    """Base class: thresholding, allowed layers, check counting, per-call state, readout, charges.

    Args:
        threshold: the rule's threshold (None: the class's default).
        lens: a :class:`~anee_lite.lens.LogitLens` or ``TunedLens``; used for checks (if the
            controller reads the lens) and for the readout of exited tokens.
        exit_layers_allowed: layers at which a token may stop (None = every layer 1..n_layers-1).
        decay_tau: CALM's decaying threshold: at position t the threshold is
            ``clip(0.9 * threshold + 0.1 * exp(-decay_tau * t / decay_horizon), 0, 1)``
            (None = constant). Only for controllers with ``decays``.
        decay_horizon: N in the formula above, in tokens.
        sink_tokens: the first this-many positions of a sequence never stop early (None: the class's
            ``default_sink_tokens``). Every later token parks much of its attention on the first one
            (the *attention sink*), so it must reach every layer with its own keys and values: on
            SmolLM2-135M, letting position 0 stop at layer 11 left its 32-token chunk agreeing with
            the full model on 6-19% of tokens instead of ~90%.
    """

    name: ClassVar[str] = "base"
    default_threshold: ClassVar[float]
    higher_exits: ClassVar[bool] = True  # stop when score >= threshold (False: score <= threshold)
    decays: ClassVar[bool] = True  # CALM's decaying threshold applies
    reads_lens: ClassVar[bool] = False  # each check is one lens evaluation, reused as the exit logits
    needs_probe: ClassVar[bool] = False  # make_controller passes it the exit probe
    default_sink_tokens: ClassVar[int] = 1  # first positions that always run every layer (see sink_tokens)
    # [B, T] lens evaluations a token made in the current call beyond what ``charges(exit_layer)`` says
    # (a screened check's confirmations that did not stop it); None for controllers that make none
    extra_lens_checks: Tensor | None = None

    def __init__(self, threshold: float | None, lens: LogitLens, *, exit_layers_allowed=None,
                 decay_tau: float | None = None, decay_horizon: int = 256, sink_tokens: int | None = None):
        if not isinstance(lens, LogitLens):
            raise TypeError(f"lens must be an anee_lite.lens.LogitLens or TunedLens, got {type(lens).__name__}")
        n_layers = lens.model.dims.n_layers
        self.lens = lens
        self.n_layers = n_layers
        # Any real number is a rule (+-inf, beyond every score, means "never exit"); strings and NaN are not.
        self.threshold = check_fraction("threshold", self.default_threshold_for(n_layers) if threshold is None
                                        else threshold, low=-math.inf, high=math.inf)
        self.exit_layers_allowed = allowed_exit_layers(exit_layers_allowed, n_layers)
        if decay_tau is not None and not (self.decays and self.higher_exits):
            raise ValueError(f"decay_tau is only for controllers whose higher score exits and whose threshold "
                             f"is a probability, not {self.name!r}")
        if decay_tau is not None:
            decay_tau = check_fraction("decay_tau", decay_tau, high=math.inf)
        self.decay_tau = decay_tau
        self.decay_horizon = check_int("decay_horizon", decay_horizon, low=1)
        self.sink_tokens = check_int("sink_tokens", self.default_sink_tokens if sink_tokens is None else sink_tokens,
                                     low=0)
        self.positions: Tensor | None = None
        self._may_stop: Tensor | None = None  # [B, T] past the sink tokens in the current call (None: all are)
        self.checks: Tensor | None = None  # [B, T] checks made for each token in the current call
        self._logits: Tensor | None = None  # [B, T, d_vocab] the last check's lens logits
        self.clear_state()  # so a controller called without reset() still has its per-call state

    @property
    def model(self):
        """The UnrolledModel whose weights the checks read (the lens's); the forward refuses any other."""
        return self.lens.model

    @classmethod
    def default_threshold_for(cls, n_layers: int) -> float:
        """The threshold to start from before calibration."""
        return cls.default_threshold

    # -- the forward's protocol (anee_lite.core.controller.Controller) -------------------------
    def reset(self, positions: Tensor | None = None) -> None:
        """Start a new forward call: clear per-call state; ``positions`` [B, T] feed the decay."""
        self.positions = positions
        # [B, T] past the sink tokens, once per call; None when every token is (a decoding step after the first)
        self._may_stop = None if positions is None else self.past_sink(positions, positions)
        if self._may_stop is not None and bool(self._may_stop.all()):
            self._may_stop = None
        self.checks = None if positions is None else torch.zeros(positions.shape, dtype=torch.long,
                                                                 device=positions.device)
        self._logits = None
        self.clear_state()

    @property
    def stops_nobody(self) -> bool:
        """True when no score can pass the threshold (calibrated to "never exit"): the forward then makes no
        decision at all, and nothing is charged for checks. A controller that runs without stopping anyone
        only adds the checks' cost (3-4% of wall time on SmolLM2-135M), so it is switched off instead."""
        return isinstance(self.threshold, float) and math.isinf(self.threshold) and (
            self.threshold > 0) == self.higher_exits

    def __call__(self, layer: int, resid: Tensor, active: Tensor) -> Tensor:
        if self.checks is None:
            self.checks = torch.zeros(active.shape, dtype=torch.long, device=active.device)
        self._logits = None
        if self.stops_nobody:
            return self.no_stop(active)
        if layer in self.exit_layers_allowed:
            stop = self.decide(self.score(layer, resid), positions=self.positions) & active  # [B, T]
            self.checks += active  # bool into long: one call
        else:
            stop = self.no_stop(active)
        self.observe(layer, resid)
        return stop

    def no_stop(self, like: Tensor) -> Tensor:
        """[B, T] all False, shaped like ``like``: one tensor kept and handed out again (never written to),
        since decoding calls this at every layer without an exit and pays for each allocation."""
        kept = getattr(self, "_no_stop", None)
        if kept is None or kept.shape != like.shape or kept.device != like.device:
            kept = self._no_stop = torch.zeros(like.shape, dtype=torch.bool, device=like.device)
        return kept

    def exit_logits(self) -> Tensor | None:
        """[B, T, d_vocab] the lens logits the check just made (None if it read no lens)."""
        return self._logits

    def readout(self, resid: Tensor, exit_layers: Tensor) -> Tensor:
        """[B, T, d] residuals of tokens that stopped at ``exit_layers`` [B, T] -> what to unembed."""
        return self.lens.readout(resid, exit_layers)

    # -- the rule ---------------------------------------------------------------------------------
    def score(self, layer: int, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T] the threshold-free signal at ``layer``."""
        raise NotImplementedError(f"{type(self).__name__} must define score(layer, resid)")

    def observe(self, layer: int, resid: Tensor) -> None:
        """Called after every layer's decision, checked or not (e.g. to remember the residual)."""

    def clear_state(self) -> None:
        """Forget per-call state (called at the start of every forward call)."""

    def decide(self, score: Tensor, threshold: float | None = None, positions: Tensor | None = None) -> Tensor:
        """[B, T] scores -> bool stops under ``threshold`` (default: this controller's) at ``positions`` [B, T]."""
        thr = self.threshold_at(self.threshold if threshold is None else threshold, positions, score)
        stop = score >= thr if self.higher_exits else score <= thr
        if positions is not None and positions is self.positions:  # this call's: the sink mask reset() made
            return stop if self._may_stop is None else stop & self._may_stop
        return stop & self.past_sink(positions, score)

    def may_stop_at(self, layer: int) -> bool:
        """Whether the decision before ``layer`` can stop anyone (the forward skips reading it otherwise)."""
        return layer in self.exit_layers_allowed and not self.stops_nobody

    def past_sink(self, positions: Tensor | None, like: Tensor):
        """[B, T] True where a token may stop: its position is past the ``sink_tokens`` first ones."""
        if positions is None or not self.sink_tokens:
            return torch.ones_like(like, dtype=torch.bool)
        return positions.to(like.device) >= self.sink_tokens  # the attention sink runs every layer

    def threshold_at(self, threshold: float, positions: Tensor | None, like: Tensor):
        """The threshold per token: a constant, or CALM's decay over the token positions [B, T]."""
        if self.decay_tau is None or positions is None:
            return threshold
        t = positions.to(like.device, like.dtype)  # [B, T]
        decayed = (0.9 * threshold + 0.1 * torch.exp(-self.decay_tau * t / self.decay_horizon)).clamp(0, 1)
        if isinstance(threshold, Tensor):  # per-row thresholds: "never" (inf) stays never
            return torch.where(torch.isinf(threshold), threshold, decayed)
        return threshold if math.isinf(threshold) else decayed

    def candidate_thresholds(self, scores: Tensor, n_quantiles: int = 48) -> list[float]:
        """Thresholds worth trying on replayed ``scores`` [n_layers, N]: quantiles, plus one where no token exits."""
        finite = scores[torch.isfinite(scores)]
        if finite.numel() == 0:
            return [self.threshold]
        qs = torch.quantile(finite[:100_000], torch.linspace(0, 1, n_quantiles)).tolist()
        return sorted(set(qs)) + [math.inf if self.higher_exits else -math.inf]  # the last: never exit

    # -- what it costs ----------------------------------------------------------------------------
    @property
    def probe_macs_per_check(self) -> int:
        """Multiply-adds of one cheap (non-lens) check; 0 if its checks are free or read the lens."""
        return 0

    def extra_check_translator_macs(self) -> int:
        """Translator MACs charged with each of ``extra_lens_checks`` (the dearest allowed layer's)."""
        return max(self.lens.translator_macs(l) for l in self.exit_layers_allowed)

    def checked_layers(self, exit_layer: int) -> list[int]:
        """The layers at which a token that ran ``exit_layer`` layers was checked (none when switched off)."""
        if self.stops_nobody:
            return []
        return [l for l in self.exit_layers_allowed if l <= exit_layer]

    def charges(self, exit_layer: int) -> dict:
        """The :func:`anee_lite.cost.token_cost` keyword arguments of a token's exit decision and readout."""
        checked = self.checked_layers(exit_layer)
        reused = self.reads_lens and exit_layer < self.n_layers  # its last check computed its output logits
        return {
            "lens_checks": len(checked) if self.reads_lens else 0,
            "lens_translator_macs": sum(self.lens.translator_macs(l) for l in checked) if self.reads_lens else 0,
            "probe_checks": len(checked) if self.probe_macs_per_check else 0,
            "probe_macs_per_check": self.probe_macs_per_check,
            "readout_translator_macs": 0 if reused else self.lens.translator_macs(exit_layer),
            "unembed": not reused,
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(threshold={self.threshold:g}, lens={self.lens.kind}, "
                f"exit_layers_allowed={self.exit_layers_allowed})")


class LensController(ExitController):
    """A controller whose check reads the lens distribution (one lens evaluation per check)."""

    reads_lens = True

    def lens_logits(self, layer: int, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d_vocab] the lens logits, kept as the exit logits of tokens that stop here."""
        self._logits = self.lens.logits(layer, resid)
        return self._logits

    def log_probs(self, layer: int, resid: Tensor) -> Tensor:
        return self.lens_logits(layer, resid).float().log_softmax(-1)  # [B, T, d] -> [B, T, V]


class RemembersPrevious:
    """Mixin for controllers that compare a residual with the one a layer earlier."""

    prev: Tensor | None = None

    def clear_state(self) -> None:
        self.prev = None

    def observe(self, layer: int, resid: Tensor) -> None:
        self.prev = resid


def make_controller(name: str, lens: LogitLens, threshold: float | None = None, *, probe=None,
                    exit_layers_allowed=None, **kwargs) -> ExitController:
    """Build a registered controller by name.

    Args:
        name: one of :func:`controller_names`.
        lens: the lens for checks and readout (``LogitLens(model)`` or a ``TunedLens``).
        threshold: None = the class's default (static's: 70% of the layers).
        probe: an :class:`~anee_lite.adaptive.probe.ExitProbe`, for controllers that read one
            (``needs_probe``, e.g. ``learned``); the others do not use it.
        exit_layers_allowed: layers where tokens may stop (None: every layer, or the probe's).
    """
    cls = controller_class(name)
    if cls.needs_probe:
        if probe is None:
            raise ValueError(f"the {name!r} controller needs a probe (train one with "
                             "anee_lite.adaptive.probe.train_probe)")
        kwargs["probe"] = probe
    return cls(threshold, lens, exit_layers_allowed=exit_layers_allowed, **kwargs)
