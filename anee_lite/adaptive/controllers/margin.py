"""``margin``: stop when the lens's first choice is far ahead of its second."""

from __future__ import annotations

from .base import LensController, register


@register
class MarginExit(LensController):
    """Stop when top-1 minus top-2 probability under the lens reaches ``threshold`` (0..1)."""

    name = "margin"
    default_threshold = 0.3

    def score(self, layer, resid):
        top2 = self.log_probs(layer, resid).topk(2, dim=-1).values.exp()  # [B, T, 2]
        return top2[..., 0] - top2[..., 1]
