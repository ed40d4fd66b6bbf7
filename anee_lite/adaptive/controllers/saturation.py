"""``saturation``: stop when the residual stream stops turning (no lens)."""

from __future__ import annotations

import math

import torch

from .base import ExitController, RemembersPrevious, register

SATURATION_REDUCTIONS = 3  # d_model-long reductions per check: h.p, |h|^2, |p|^2


@register
class SaturationExit(RemembersPrevious, ExitController):
    """Stop when the cosine between this residual and the previous layer's reaches ``threshold``.

    No lens: each check is three ``d_model``-long reductions. At the first layer there is no
    previous residual (the forward does not show the embeddings), so no token stops there.
    """

    name = "saturation"
    default_threshold = 0.95

    @property
    def probe_macs_per_check(self):
        return SATURATION_REDUCTIONS * self.lens.model.dims.d_model

    def score(self, layer, resid):
        if self.prev is None:
            return torch.full(resid.shape[:2], -math.inf, device=resid.device)
        return torch.nn.functional.cosine_similarity(resid, self.prev, dim=-1)  # [B, T]
