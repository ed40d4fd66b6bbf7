"""Switching parts of the model off inside the forward: layers, attention heads, MLP neurons, small activations.

Every mask here is *exact*: a masked head is the same as zeroing its columns of the output
projection, a masked neuron the same as zeroing its row of the down projection, a skipped layer
the same as deleting the block. :mod:`anee_lite.sparsity` chooses what to mask and builds
physically smaller models; this module only applies the choice, one small function per lever.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .validation import check_fraction


@dataclass(frozen=True, eq=False)
class ActivationThresholds:
    """Per-layer magnitude thresholds for activation sparsity, calibrated on text (TEAL / CATS style).

    A token's MLP hidden activation ``h`` at layer ``l`` keeps the entries with
    ``|h| >= thresholds[l]``; on the calibration text that zeroes about ``fraction`` of them.
    Build one with :func:`anee_lite.sparsity.calibrate_activation_thresholds`.
    """

    fraction: float  # the share of activations the thresholds were calibrated to zero
    thresholds: Tensor  # [n_layers] magnitudes

    def __post_init__(self):
        check_fraction("fraction", self.fraction)
        if not isinstance(self.thresholds, Tensor) or self.thresholds.dim() != 1:
            raise TypeError("thresholds must be a 1-D torch.Tensor [n_layers]")
        if not bool(torch.isfinite(self.thresholds).all()) or bool((self.thresholds < 0).any()):
            raise ValueError("thresholds must be finite and >= 0")

    @property
    def n_layers(self) -> int:
        return self.thresholds.shape[0]


@dataclass(frozen=True, eq=False)
class Sparsity:
    """The validated sparsity knobs of one forward call (see :meth:`UnrolledModel.forward`)."""

    skip_layers: tuple[int, ...] = ()
    head_mask: Tensor | None = None  # [n_layers, n_heads]
    mlp_mask: Tensor | None = None  # [n_layers, d_mlp]
    activation: float | ActivationThresholds | None = None

    @property
    def active(self) -> bool:
        """Whether anything is switched off at all (all None = the plain forward)."""
        return bool(self.skip_layers) or self.head_mask is not None or self.mlp_mask is not None \
            or self.activation is not None

    def frozen(self) -> Sparsity:
        """A copy holding its own masks: a caller who edits a mask in place afterwards does not change it."""
        activation = self.activation
        if isinstance(activation, ActivationThresholds):
            activation = ActivationThresholds(activation.fraction, activation.thresholds.clone())
        return Sparsity(self.skip_layers, None if self.head_mask is None else self.head_mask.detach().clone(),
                        None if self.mlp_mask is None else self.mlp_mask.detach().clone(), activation)

    def matches(self, other: Sparsity) -> bool:
        """Equal knobs: a KV cache is only valid under the knobs that filled it."""
        def same(a, b):
            if a is None or b is None:
                return a is b
            if isinstance(a, ActivationThresholds) or isinstance(b, ActivationThresholds):
                return (isinstance(a, ActivationThresholds) and isinstance(b, ActivationThresholds)
                        and a.fraction == b.fraction and torch.equal(a.thresholds, b.thresholds))
            if isinstance(a, Tensor) and isinstance(b, Tensor):
                return a is b or (a.shape == b.shape and torch.equal(a.float(), b.float()))
            return a == b

        return (self.skip_layers == other.skip_layers and same(self.head_mask, other.head_mask)
                and same(self.mlp_mask, other.mlp_mask) and same(self.activation, other.activation))


def mask_heads(z: Tensor, head_mask: Tensor) -> Tensor:
    """[B, T, H * D] head outputs times their [H] mask, before the output projection."""
    B, T, HD = z.shape
    H = head_mask.shape[0]
    z = z.view(B, T, H, HD // H) * head_mask.to(z.device, z.dtype)[:, None]  # [B, T, H, D] * [H, 1]
    return z.view(B, T, HD)


def sparsify_activations(hidden: Tensor, layer: int, spec: float | ActivationThresholds) -> Tensor:
    """Zero each token's smallest-magnitude MLP activations [B, T, d_mlp].

    A float keeps, per token, exactly the ``ceil((1 - f) * d_mlp)`` largest magnitudes (the oracle the
    thresholds approximate); :class:`ActivationThresholds` keeps ``|h| >= thresholds[layer]``.
    """
    magnitude = hidden.abs()  # [B, T, d_mlp]
    if isinstance(spec, ActivationThresholds):
        keep = magnitude >= spec.thresholds[layer].to(hidden.device, hidden.dtype)
    else:
        n_zero = int(spec * hidden.shape[-1])
        if n_zero == 0:
            return hidden
        kth = magnitude.kthvalue(n_zero, dim=-1, keepdim=True).values  # [B, T, 1]: largest zeroed magnitude
        keep = magnitude > kth
    return hidden * keep


def used_rows(hidden: Tensor) -> Tensor | None:
    """Indices of the non-zero activations of a single token [1, 1, d_mlp] (None for several tokens).

    With one token, the down projection only needs these rows of its [d_mlp, d_model] weight: gather
    them and multiply, instead of multiplying zeros.
    """
    if hidden.shape[0] * hidden.shape[1] != 1:
        return None  # tokens keep different entries; a gather per token costs more than it saves
    return hidden[0, 0].nonzero()[:, 0]  # [n_kept]
