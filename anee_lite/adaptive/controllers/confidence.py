"""``confidence``: stop when the lens is sure enough (CALM's softmax-confidence rule)."""

from __future__ import annotations

from .base import LensController, register


@register
class ConfidenceExit(LensController):
    """Stop when the lens's top-1 probability reaches ``threshold`` (0..1)."""

    name = "confidence"
    default_threshold = 0.5

    def score(self, layer, resid):
        return self.log_probs(layer, resid).max(-1).values.exp()  # [B, T]
