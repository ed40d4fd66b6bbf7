"""``static``: the seed's fixed depth, as a controller."""

from __future__ import annotations

import math

import torch

from .base import ExitController, register


@register
class StaticExit(ExitController):
    """Every token stops at the first allowed layer >= ``threshold`` (a layer count). Checks are free."""

    name = "static"
    default_threshold = 0.7  # as a fraction of the layers: see default_threshold_for
    decays = False  # a layer count does not decay
    default_sink_tokens = 0  # every token stops at the same layer: no deeper layer ever reads a frozen state

    @classmethod
    def default_threshold_for(cls, n_layers):
        return round(cls.default_threshold * n_layers)

    def score(self, layer, resid):
        return torch.full(resid.shape[:2], float(layer), device=resid.device)  # [B, T]

    def candidate_thresholds(self, scores, n_quantiles=48):
        return [float(l) for l in self.exit_layers_allowed] + [math.inf]  # the last: never exit
