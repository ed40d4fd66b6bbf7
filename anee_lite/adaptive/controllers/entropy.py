"""``entropy``: stop when the lens distribution is peaked enough."""

from __future__ import annotations

from ...core.metrics import entropy
from .base import LensController, register


@register
class EntropyExit(LensController):
    """Stop when the lens distribution's entropy (nats) falls to ``threshold`` or below."""

    name = "entropy"
    default_threshold = 1.5
    higher_exits = False

    def score(self, layer, resid):
        return entropy(self.log_probs(layer, resid))  # [B, T, V] -> [B, T]
