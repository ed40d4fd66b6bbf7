"""``patience``: stop once the lens has changed its mind no more for a while (PABEE)."""

from __future__ import annotations

import math

import torch

from .base import LensController, register


@register
class PatienceExit(LensController):
    """Stop once the lens top-1 has stayed the same for ``threshold`` consecutive checks."""

    name = "patience"
    default_threshold = 2
    decays = False  # a count of checks does not decay

    def clear_state(self):
        self.prev_top = None  # [B, T] the last check's top-1
        self.streak = None  # [B, T] consecutive checks it has stayed the same

    def score(self, layer, resid):
        top = self.lens_logits(layer, resid).argmax(-1)  # [B, T]
        if self.prev_top is None:
            self.streak = torch.zeros(top.shape, device=resid.device)
        else:
            self.streak = torch.where(top == self.prev_top, self.streak + 1, torch.zeros_like(self.streak))
        self.prev_top = top
        return self.streak

    def candidate_thresholds(self, scores, n_quantiles=48):
        return [float(k) for k in range(len(self.exit_layers_allowed))] + [math.inf]  # the last: never exit
