"""Reading a prediction off a middle layer: the logit lens and the tuned lens.

A *lens* here is always an object with ``logits(layer, resid)``: :class:`LogitLens` (the model's own
final norm and unembedding) or :class:`TunedLens` (a trained per-layer translator first).
:func:`logit_lens` applies the logit lens after every layer of one prompt.
"""

from .logit import LensResult, LogitLens, lens_from_resid, logit_lens
from .tuned import TunedLens, collect_residuals, lens_quality, train_tuned_lens

__all__ = [
    "LensResult",
    "LogitLens",
    "TunedLens",
    "collect_residuals",
    "lens_from_resid",
    "lens_quality",
    "logit_lens",
    "train_tuned_lens",
]
