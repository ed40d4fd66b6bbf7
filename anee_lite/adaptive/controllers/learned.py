"""``learned``: a tiny probe on the hidden state predicts whether the readout is already final (CALM)."""

from __future__ import annotations

import torch

from ..probe import ExitProbe
from .base import ExitController, RemembersPrevious, register


@register
class LearnedExit(RemembersPrevious, ExitController):
    """Stop when a learned probe's P(lens top-1 is already final) reaches ``threshold``.

    Args:
        probe: an :class:`~anee_lite.adaptive.probe.ExitProbe`; exits are allowed only at its layers.
    """

    name = "learned"
    default_threshold = 0.8
    needs_probe = True

    def __init__(self, threshold, lens, probe: ExitProbe, *, exit_layers_allowed=None, **kwargs):
        self.probe = probe
        super().__init__(threshold, lens, exit_layers_allowed=probe.layers if exit_layers_allowed is None
                         else exit_layers_allowed, **kwargs)  # checks the lens and the layers
        missing = sorted(set(self.exit_layers_allowed) - set(probe.layers))
        if missing:
            raise ValueError(f"exit_layers_allowed must be layers the probe was trained at {probe.layers}, "
                             f"got extra layers {missing}")
        probe.check_fits(lens.model)
        if probe.lens_kind != lens.kind:
            raise ValueError(f"the probe was trained for a {probe.lens_kind} lens readout, got a {lens.kind} lens")

    @property
    def probe_macs_per_check(self):
        return self.probe.macs_per_check

    def score(self, layer, resid):
        prev = resid if self.prev is None else self.prev
        if resid.dtype != torch.float32:  # the probe's arithmetic in float32 (a cast of a float32 tensor still costs a call)
            resid, prev = resid.float(), prev.float()
        return self.probe.prob(layer, resid, prev)  # [B, T]
