"""Switching parts of the model off inside the forward: layers, attention heads, MLP neurons, small activations.

Every mask here is *exact*: a masked head is the same as zeroing its columns of the output
projection, a masked neuron the same as zeroing its row of the down projection, a skipped layer
the same as deleting the block, a zeroed input entry the same as leaving out its row of the weight
it multiplies. :mod:`anee_lite.sparsity` chooses what to mask and builds physically smaller models;
this module only applies the choice, one small function per lever.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .architectures.base import linear
from .validation import as_list, check_fraction

# The four weight matrices of a block, each named after the input activation it multiplies: activation
# sparsity (TEAL) zeroes small entries of each input separately, with its own threshold.
LINEAR_INPUTS = ("W_QKV", "W_O", "W_mlp_in", "W_out")
LINEAR_INPUT_HOOKS = ("ln1.hook_normalized", "attn.hook_z", "ln2.hook_normalized", "mlp.hook_post")

# Reading only the kept rows of a weight pays once at least this share of its input is zero. Below it
# the selection's bookkeeping costs more than the rows it saves, so the input is masked and multiplied
# densely (same result). Measured per matrix on a 2-core x86 CPU for SmolLM2-135M by
# benchmarks/bench_sparsity.py (the "matvec" table of anee_lite/data/sparsity_benchmark.json): the
# dense product of the narrow W_QKV streams fastest, the down projection's slowest.
ROW_SKIP_MIN_SPARSITY = {"W_QKV": 0.5, "W_O": 0.7, "W_mlp_in": 0.3, "W_out": 0.2}


@dataclass(frozen=True, eq=False)
class ActivationThresholds:
    """Per-layer, per-matrix magnitude thresholds for activation sparsity, calibrated on text (TEAL / CATS).

    At layer ``l`` the input ``x`` of matrix ``LINEAR_INPUTS[i]`` keeps the entries with
    ``|x| >= thresholds[l, i]``; on the calibration text that zeroes about ``fraction`` of each.
    Build one with :func:`anee_lite.sparsity.calibrate_activation_thresholds`.
    """

    fraction: float  # the share of each input the thresholds were calibrated to zero
    thresholds: Tensor  # [n_layers, 4] magnitudes, columns in LINEAR_INPUTS order

    def __post_init__(self):
        check_fraction("fraction", self.fraction)
        if not isinstance(self.thresholds, Tensor) or self.thresholds.dim() != 2 \
                or self.thresholds.shape[1] != len(LINEAR_INPUTS):
            raise TypeError(f"thresholds must be a torch.Tensor [n_layers, {len(LINEAR_INPUTS)}] (one column per "
                            f"matrix of {LINEAR_INPUTS})")
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

    def kept_groups(self, layer: int, n_kv_heads: int) -> list[int] | None:
        """Key/value groups of ``layer`` with at least one query head left (None: all, or no head mask).

        A group whose heads are all masked contributes nothing, so its queries, keys and values are
        never computed and the KV cache holds no entry for it.
        """
        if self.head_mask is None:
            return None
        alive = (self.head_mask[layer] != 0).view(n_kv_heads, -1).any(-1)  # [H] -> [K, H / K] -> [K]
        return None if bool(alive.all()) else alive.nonzero()[:, 0].tolist()

    def projector(self, layer: int, matrix: str):
        """The function ``(x, W, b) -> x @ W + b`` for one matrix of one layer, with this call's input sparsity."""
        spec = self.activation
        if spec is None:
            return linear
        site = LINEAR_INPUTS.index(matrix)
        if isinstance(spec, ActivationThresholds):  # a Python float: no tensor indexing per product
            fraction, threshold = spec.fraction, float(spec.thresholds[layer, site])
        else:
            fraction, threshold = spec, None
        skip_rows = fraction >= ROW_SKIP_MIN_SPARSITY[matrix]

        def project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
            keep = x.abs() >= threshold if threshold is not None else keep_inputs(x, layer, site, spec)  # [..., in]
            return sparse_input_linear(x, w, b, keep, skip_rows=skip_rows)

        return project


def mask_heads(z: Tensor, head_mask: Tensor) -> Tensor:
    """[B, T, H * D] head outputs times their [H] mask, before the output projection."""
    B, T, HD = z.shape
    H = head_mask.shape[0]
    z = z.view(B, T, H, HD // H) * head_mask.to(z.device, z.dtype)[:, None]  # [B, T, H, D] * [H, 1]
    return z.view(B, T, HD)


def keep_inputs(x: Tensor, layer: int, site: int, spec: float | ActivationThresholds) -> Tensor:
    """[..., d_in] bool: the entries of a linear map's input that activation sparsity keeps.

    A float keeps, per token, exactly the ``d_in - int(f * d_in)`` largest magnitudes (the oracle the
    thresholds approximate); :class:`ActivationThresholds` keep ``|x| >= thresholds[layer, site]``.
    """
    magnitude = x.abs()  # [..., d_in]
    if isinstance(spec, ActivationThresholds):
        return magnitude >= spec.thresholds[layer, site].to(x.device, x.dtype)
    n_zero = int(spec * x.shape[-1])
    if n_zero == 0:
        return torch.ones_like(x, dtype=torch.bool)
    kth = magnitude.kthvalue(n_zero, dim=-1, keepdim=True).values  # [..., 1]: largest zeroed magnitude
    return magnitude > kth


def sparsify_activations(x: Tensor, layer: int, spec: float | ActivationThresholds, site: int = 3) -> Tensor:
    """Zero the entries of ``x`` [..., d_in] that activation sparsity drops; ``site`` indexes ``LINEAR_INPUTS``.

    The default, 3, is the down projection's input: the MLP hidden activations.
    """
    return x * keep_inputs(x, layer, site, spec)


def sparse_matvec(x: Tensor, w: Tensor, kept: Tensor) -> Tensor:
    """``sum_i x[i] * w[i, :]`` over the row indices ``kept`` [n] only: [d_in] x [d_in, d_out] -> [d_out].

    ``embedding_bag`` reads just those rows of the contiguous [in, out] weight, scaled and summed,
    without copying them; the kept rows are split into one bag per thread so both cores stream.
    """
    n_bags = max(1, min(torch.get_num_threads(), kept.numel()))
    offsets = torch.tensor([i * (kept.numel() // n_bags) for i in range(n_bags)], device=kept.device)  # bag starts
    bags = F.embedding_bag(kept, w, offsets, mode="sum", per_sample_weights=x[kept])  # [n_bags, d_out]
    return bags.sum(0)  # [d_out]


def sparse_input_linear(x: Tensor, w: Tensor, b: Tensor | None, keep: Tensor, *, skip_rows: bool = True) -> Tensor:
    """``(x * keep) @ w + b`` [..., in] -> [..., out], reading only the kept rows of ``w`` where that pays.

    With ``skip_rows`` (the input is sparse enough), one token on the CPU and a contiguous weight:
    :func:`sparse_matvec`. Otherwise (a batch, a prefill, a column view of a weight, a GPU, autograd)
    the masked input is multiplied densely: tokens keep different entries, and one gather per token
    costs more than it saves.
    """
    if skip_rows and x.numel() == x.shape[-1] and x.device.type == "cpu" and w.is_contiguous() \
            and not torch.is_grad_enabled():
        kept = keep.view(-1).nonzero()[:, 0]  # [n_kept]
        out = sparse_matvec(x.reshape(-1), w, kept) if kept.numel() else x.new_zeros(w.shape[1])  # [d_out]
        out = out if b is None else out + b
        return out.view(*x.shape[:-1], w.shape[1])  # [d_out] -> [1, 1, d_out]
    return linear(x * keep, w, b)  # [..., in] -> [..., out]


def check_mask(name: str, mask, shape: tuple[int, ...], what: str) -> Tensor | None:
    """A float or bool multiplicative mask of exactly ``shape``, finite (None passes through)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {list(shape)} {what}, got {type(mask).__name__}")
    if not (mask.is_floating_point() or mask.dtype == torch.bool):
        raise TypeError(f"{name} must hold floats or bools (1 keeps, 0 removes), got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)} {what}, got {list(mask.shape)}")
    if mask.dtype != torch.bool and not bool(torch.isfinite(mask).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return mask


def check_sparsity(dims, skip_layers=None, head_mask=None, mlp_mask=None, activation_sparsity=None) -> Sparsity:
    """The forward's sparsity keywords, checked -> one :class:`Sparsity` (skip_layers a sorted tuple, masks or
    None, activation None, a fraction in (0, 1) or :class:`ActivationThresholds`)."""
    skipped: tuple[int, ...] = ()
    if skip_layers is not None:
        items = as_list("skip_layers", skip_layers, "an iterable of layer indices")
        for layer in items:
            if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                raise TypeError(f"skip_layers must hold integer layer indices, got {layer!r}")
            if not 0 <= layer < dims.n_layers:
                raise ValueError(f"skip_layers must hold layer indices in [0, {dims.n_layers - 1}], got {layer}")
        skipped = tuple(sorted({int(layer) for layer in items}))
    head_mask = check_mask("head_mask", head_mask, (dims.n_layers, dims.n_heads), "[n_layers, n_heads]")
    mlp_mask = check_mask("mlp_mask", mlp_mask, (dims.n_layers, dims.d_mlp), "[n_layers, d_mlp]")
    if activation_sparsity is not None and not isinstance(activation_sparsity, ActivationThresholds):
        fraction = check_fraction("activation_sparsity", activation_sparsity)
        if fraction >= 1.0:
            raise ValueError(f"activation_sparsity must be in [0, 1): the fraction of MLP activations "
                             f"zeroed per token, got {fraction}")
        activation_sparsity = fraction if fraction > 0 else None
    elif isinstance(activation_sparsity, ActivationThresholds) and activation_sparsity.n_layers != dims.n_layers:
        raise ValueError(f"activation_sparsity thresholds are for {activation_sparsity.n_layers} layers, "
                         f"this model has {dims.n_layers}")
    return Sparsity(skipped, head_mask, mlp_mask, activation_sparsity)


def check_masks(dims, masks) -> dict:
    """``generate()``'s ``masks``: a dict of the forward's sparsity keywords, each valid -> a copy ({} for None).

    Checked once up front (the forward checks them again at each step, but ``max_new_tokens=0`` runs none).
    """
    if masks is None:
        return {}
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict of the forward's sparsity keywords, e.g. {{'skip_layers': [3]}}, "
                        f"got {type(masks).__name__}")
    unknown = set(masks) - {"skip_layers", "head_mask", "mlp_mask", "activation_sparsity"}
    if unknown:
        raise ValueError(f"masks may only hold skip_layers, head_mask, mlp_mask, activation_sparsity; "
                         f"got {sorted(unknown, key=str)}")
    check_sparsity(dims, **masks)
    return dict(masks)
