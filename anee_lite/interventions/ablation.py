"""Ablation: remove heads, neurons or whole layers through hooks, by zeroing them or by their mean.

Each ``ablate_*`` function returns a ``hooks`` dict for :meth:`UnrolledModel.forward` (combine several
with ``{**a, **b}`` when they touch different hook points). Zero ablation sets the activation to 0;
mean ablation sets it to its mean over a reference text (:func:`mean_activations`), which keeps the
typical size of what the removed part writes and so measures what its *variation* carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from ..core.hooks import check_hook_names
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_int, check_layers


def record(model: UnrolledModel, input_ids: Tensor, names: Iterable[str], **forward_kwargs) -> dict[str, Tensor]:
    """The activations at ``names`` (hook names) in one forward: {name: tensor}, as the rest of the forward saw them.

    Keyword arguments (``attention_mask``, ``exit_layers``, other ``hooks``, ...) go to the forward; a name
    the call never reaches (past the deepest exit) is missing from the result.
    """
    return run_and_record(model, input_ids, names, **forward_kwargs)[1]


def run_and_record(model: UnrolledModel, input_ids: Tensor, names: Iterable[str], **forward_kwargs):
    """:func:`record` that also returns the forward's output: (ForwardOutput, {name: tensor}), one pass."""
    model = check_unrolled(model)
    names = check_hook_names(model.dims, names)
    seen: dict[str, Tensor] = {}
    hooks = dict(forward_kwargs.pop("hooks", None) or {})
    for name in names:
        hooks[name] = _recorder(hooks.get(name), seen)
    return model(input_ids, hooks=hooks, **forward_kwargs), seen


def mean_activations(model: UnrolledModel, input_ids: Tensor, names: Iterable[str],
                     attention_mask: Tensor | None = None) -> dict[str, Tensor]:
    """Each activation's mean over the batch and the real (unpadded) positions: the values mean ablation uses.

    ``hook_pattern`` is not averaged (its key axis depends on the context): ask for ``hook_z`` instead.
    """
    model = check_unrolled(model)
    names = check_hook_names(model.dims, names)
    for name in names:
        if name.endswith("hook_pattern"):
            raise ValueError(f"mean_activations cannot average {name!r}: attention patterns depend on the context "
                             "length; mean-ablate a head through its output, attn.hook_z")
    acts = record(model, input_ids, names, attention_mask=attention_mask)
    real = (torch.ones(input_ids.shape, dtype=torch.bool) if attention_mask is None
            else attention_mask.bool()).to(model.device)  # [B, T]
    return {name: acts[name][real].mean(0) for name in names}  # [B, T, ...] -> [n_real, ...] -> [...]


def ablate_heads(model: UnrolledModel, heads: Mapping[int, Iterable[int]],
                 means: Mapping[str, Tensor] | None = None) -> dict:
    """Hooks removing query heads of ``model``.

    Args:
        model: the model the hooks are for (its sizes bound the layer and head numbers).
        heads: {layer: [head, ...]}, the heads to remove.
        means: None for zero ablation, or :func:`mean_activations` of ``blocks.{l}.attn.hook_z`` for those layers.
    """
    model = check_unrolled(model)
    chosen = _chosen(heads, "heads", model.dims.n_layers, model.dims.n_heads, "head")
    return {f"blocks.{l}.attn.hook_z": _replace(idx, _mean(means, f"blocks.{l}.attn.hook_z"), axis=2)
            for l, idx in chosen.items()}


def ablate_neurons(model: UnrolledModel, neurons: Mapping[int, Iterable[int]],
                   means: Mapping[str, Tensor] | None = None) -> dict:
    """Hooks removing MLP neurons of ``model``: ``neurons`` maps a layer to hidden units (of ``d_mlp``) to remove.

    ``means``: None for zero ablation, or :func:`mean_activations` of ``blocks.{l}.mlp.hook_post``.
    """
    model = check_unrolled(model)
    chosen = _chosen(neurons, "neurons", model.dims.n_layers, model.dims.d_mlp, "neuron")
    return {f"blocks.{l}.mlp.hook_post": _replace(idx, _mean(means, f"blocks.{l}.mlp.hook_post"), axis=2)
            for l, idx in chosen.items()}


def ablate_layers(model: UnrolledModel, layers: Iterable[int], means: Mapping[str, Tensor] | None = None) -> dict:
    """Hooks removing whole blocks of ``model``.

    Zero ablation (``means=None``): the block adds nothing, its output is its input (as ``skip_layers``
    does, but as an intervention you can combine with others). Mean ablation: every head's output and
    every MLP neuron take their means (``means`` from :func:`mean_activations` of
    ``blocks.{l}.attn.hook_z`` and ``blocks.{l}.mlp.hook_post``), so the block adds what it adds on average.
    """
    model = check_unrolled(model)
    hooks: dict = {}
    for l in check_layers("layers", layers, low=0, high=model.dims.n_layers - 1):
        if means is None:
            hooks.update(_pass_through(l))
        else:
            hooks[f"blocks.{l}.attn.hook_z"] = _replace(None, _mean(means, f"blocks.{l}.attn.hook_z"), axis=2)
            hooks[f"blocks.{l}.mlp.hook_post"] = _replace(None, _mean(means, f"blocks.{l}.mlp.hook_post"), axis=2)
    return hooks


def _recorder(inner, seen: dict):
    def hook(t: Tensor, name: str):
        out = inner(t, name) if inner is not None else None
        seen[name] = (t if out is None else out).detach().clone()
        return out

    return hook


def _chosen(which, what: str, n_layers: int, size: int, unit: str) -> dict[int, list[int]]:
    """{layer: [index, ...]} checked against the model's sizes."""
    if not isinstance(which, Mapping) or not which:
        raise TypeError(f"{what} must be a non-empty dict {{layer: [{unit}, ...]}}, got {which!r}")
    out = {}
    for layer, idx in which.items():
        layer = check_int(f"a layer of {what}", layer, low=0, high=n_layers - 1)
        if isinstance(idx, (int, Tensor)) or not isinstance(idx, Iterable):
            raise TypeError(f"{what}[{layer}] must be a list of {unit} indices, got {idx!r}")
        idx = sorted({check_int(f"{what}[{layer}]", i, low=0, high=size - 1) for i in idx})
        if not idx:
            raise ValueError(f"{what}[{layer}] is empty: name at least one {unit}")
        out[layer] = idx
    return out


def _mean(means, name: str) -> Tensor | None:
    if means is None:
        return None
    if not isinstance(means, Mapping) or name not in means:
        raise ValueError(f"means must hold {name!r} (mean_activations(model, ids, [{name!r}, ...])) for mean "
                         "ablation; pass means=None for zero ablation")
    return means[name]


def _replace(idx: list[int] | None, mean: Tensor | None, axis: int):
    """A hook setting entries ``idx`` (None: all) along ``axis`` of [B, T, n, ...] to 0 or to ``mean`` [n, ...]."""
    def hook(t: Tensor, name: str) -> Tensor:
        if mean is not None and tuple(mean.shape) != tuple(t.shape[axis:]):
            raise ValueError(f"the mean for {name!r} has shape {list(mean.shape)}, the activation "
                             f"{list(t.shape[axis:])} per token: compute it on this model")
        sel = slice(None) if idx is None else idx
        t = t.clone()
        if mean is None:
            t[:, :, sel] = 0
        else:
            t[:, :, sel] = mean.to(t.device, t.dtype)[sel]
        return t

    return hook


def _pass_through(layer: int) -> dict:
    """Hooks making block ``layer``'s output equal its input."""
    entering: dict[str, Tensor] = {}

    def keep(t: Tensor, name: str) -> None:
        entering["resid"] = t

    def restore(t: Tensor, name: str) -> Tensor:
        return entering.pop("resid")

    return {f"blocks.{layer}.hook_resid_pre": keep, f"blocks.{layer}.hook_resid_post": restore}
