"""Per-layer magnitude thresholds for activation sparsity, calibrated on text (TEAL, CATS)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.masks import ActivationThresholds
from ..core.model import UnrolledModel
from ..core.validation import check_fraction


@torch.no_grad()
def calibrate_activation_thresholds(model: UnrolledModel, input_ids: Tensor, fraction: float) -> ActivationThresholds:
    """Thresholds that zero ``fraction`` of each layer's MLP hidden activations on this text.

    TEAL (Liu et al. 2024, arXiv:2408.14690) and CATS (Lee et al. 2024, arXiv:2404.08763) both pick,
    per layer, the magnitude below which the wanted share of activations falls on calibration
    text; at run time a token keeps ``|h| >= threshold``, a compare instead of a sort.

    Args:
        model: the unrolled model.
        input_ids: [B, T] calibration tokens.
        fraction: share of activations to zero, in [0, 1).
    """
    fraction = check_fraction("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    acts = model(input_ids.to(model.device), return_mlp_hidden=True).activations
    thresholds = []
    for layer in range(model.dims.n_layers):
        magnitude = acts[f"blocks.{layer}.mlp.hook_post"].abs().flatten().float()  # [B * T * d_mlp]
        thresholds.append(torch.quantile(magnitude[:2**24], fraction) if fraction > 0 else magnitude.new_zeros(()))
    return ActivationThresholds(fraction, torch.stack(thresholds))
