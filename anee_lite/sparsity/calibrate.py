"""Per-layer magnitude thresholds for activation sparsity, calibrated on text (TEAL, CATS)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.masks import ActivationThresholds
from ..core.model import UnrolledModel
from ..core.validation import check_fraction


@torch.no_grad()
def calibrate_activation_thresholds(model: UnrolledModel, input_ids: Tensor, fraction: float, *, skip_layers=None,
                                    head_mask: Tensor | None = None,
                                    mlp_mask: Tensor | None = None) -> ActivationThresholds:
    """Thresholds that zero ``fraction`` of each layer's MLP hidden activations on this text.

    TEAL (Liu et al. 2024, arXiv:2408.14690) and CATS (Lee et al. 2024, arXiv:2404.08763) both pick,
    per layer, the magnitude below which the wanted share of activations falls on calibration
    text; at run time a token keeps ``|h| >= threshold``, a compare instead of a sort.

    Args:
        model: the unrolled model.
        input_ids: [B, T] calibration tokens.
        fraction: share of activations to zero, in [0, 1).
        skip_layers, head_mask, mlp_mask: the other knobs it will run with (the activations they
            leave are the ones to threshold; a neuron pruned by ``mlp_mask`` counts as already zero).
    """
    fraction = check_fraction("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    acts = model(input_ids.to(model.device), return_mlp_hidden=True, skip_layers=skip_layers, head_mask=head_mask,
                 mlp_mask=mlp_mask).activations
    thresholds = []
    for layer in range(model.dims.n_layers):
        hidden = acts.get(f"blocks.{layer}.mlp.hook_post")  # [B, T, d_mlp]; absent for a skipped layer
        if hidden is None:
            thresholds.append(torch.zeros(()))
            continue
        if mlp_mask is not None:  # only the neurons still there: the fraction is of what runs
            hidden = hidden[..., mlp_mask[layer] != 0]
        magnitude = hidden.abs().flatten().float()  # [B * T * d_kept]
        thresholds.append(torch.quantile(magnitude[:2**24], fraction) if fraction > 0 else magnitude.new_zeros(()))
    return ActivationThresholds(fraction, torch.stack(thresholds))
