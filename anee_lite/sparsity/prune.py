"""Physically smaller models: slice the weight matrices of removed heads and neurons, delete skipped layers.

The masks of the forward compute everything and multiply by zero; a pruned model never computes
it, so its savings show on the clock. ``prune`` builds a new HuggingFace model (the caller's is not
touched), which :class:`~anee_lite.core.model.UnrolledModel` runs like any other, and equals the
masked forward of the original to float precision (tested).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..core.architectures import converter_for
from ..core.masks import check_sparsity
from ..core.validation import check_hf_model


def _no_init():
    try:  # transformers 5: skip random initialisation, every weight is overwritten
        from transformers.initialization import no_init_weights

        return no_init_weights()
    except ImportError:
        return contextlib.nullcontext()


def _kept(mask: Tensor | None, n: int, name: str) -> list[Tensor]:
    """Per layer, the kept indices of a 0/1 mask; every layer must keep as many (one HF config for all)."""
    if mask is None:
        return None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 to prune (a soft mask scales, it cannot be sliced away)")
    kept = [row.nonzero()[:, 0] for row in mask.bool()]
    counts = {k.numel() for k in kept}
    if len(counts) != 1:
        raise ValueError(f"{name} keeps {sorted(counts)} per layer: prune needs the same count in every layer "
                         "(HF configs have one size for all layers); the masked forward accepts any mask")
    return kept


def _head_plan(head_mask: Tensor | None, n_heads: int, n_kv: int, n_layers: int):
    """Per layer: kept query heads and kept key/value groups (a group goes when all its heads go)."""
    kept = _kept(head_mask, n_heads, "head_mask")
    if kept is None:
        return None, n_heads, n_kv
    group = n_heads // n_kv
    plans, sizes = [], set()
    for heads in kept:
        groups = sorted({int(h) // group for h in heads})
        per_group = {g: sum(int(h) // group == g for h in heads) for g in groups}
        if len(set(per_group.values())) > 1:
            raise ValueError("head_mask must keep the same number of query heads in every kept key/value group "
                             "to prune (see head_mask_from_scores)")
        plans.append((heads, torch.tensor(groups, dtype=torch.long)))
        sizes.add((len(heads), len(groups)))
    if len(sizes) != 1:
        raise ValueError("head_mask must keep the same number of heads and groups in every layer to prune")
    (h, k), = sizes
    if h == 0:
        raise ValueError("prune cannot remove every head of a layer (HF attention needs one); skip the layer instead")
    return plans, h, k


@torch.no_grad()
def prune(hf_model, *, skip_layers=None, head_mask: Tensor | None = None, mlp_mask: Tensor | None = None):
    """A new, smaller HF model without the skipped layers, removed heads and removed MLP neurons.

    Args:
        hf_model: a ``LlamaForCausalLM`` or ``GPT2LMHeadModel`` (left unchanged).
        skip_layers: layer indices to delete.
        head_mask: [n_layers, n_heads] 0/1; the same number of heads kept in every layer and kv group
            (Llama-family only: HF's GPT-2 ties the head width to ``n_embd``).
        mlp_mask: [n_layers, d_mlp] 0/1 with the same number of neurons kept in every layer.

    Returns:
        The pruned model, in eval mode, on the original's device.
    """
    check_hf_model("hf_model", hf_model)
    arch = converter_for(getattr(hf_model.config, "model_type", None))
    dims = arch.dims_from_hf(hf_model)
    knobs = check_sparsity(dims, skip_layers, head_mask, mlp_mask)
    skip, head_mask, mlp_mask = knobs.skip_layers, knobs.head_mask, knobs.mlp_mask
    if len(skip) == dims.n_layers:
        raise ValueError("skip_layers would delete every layer; keep at least one")
    mlp_kept = _kept(mlp_mask, dims.d_mlp, "mlp_mask")
    if head_mask is not None and arch.head_pruning is not None:
        raise ValueError(f"head pruning is not available for {arch.model_type}: {arch.head_pruning}")
    plans, n_heads, n_kv = _head_plan(head_mask, dims.n_heads, dims.n_kv_heads, dims.n_layers)
    return _build(hf_model, arch, skip, plans, mlp_kept, dims, n_heads=n_heads, n_kv=n_kv)


def _build(hf_model, arch, skip, plans, mlp_kept, dims, n_heads, n_kv):
    """The smaller HF model: the architecture says where its blocks are and how each tensor is sliced."""
    cfg, keys = hf_model.config.to_dict(), arch.hf_config_keys
    kept_layers = [layer for layer in range(dims.n_layers) if layer not in skip]
    state = hf_model.state_dict()
    new_state = {}
    prefix, cfg[keys["n_layers"]] = arch.hf_layers, len(kept_layers)
    if getattr(hf_model.config, "layer_types", None):  # per-layer attention kinds follow the kept layers
        cfg["layer_types"] = [hf_model.config.layer_types[i] for i in kept_layers]
    if plans is not None:
        cfg.update({keys["n_heads"]: n_heads, keys["n_kv_heads"]: n_kv, keys["d_head"]: dims.d_head})
    if mlp_kept is not None:
        cfg[keys["d_mlp"]] = mlp_kept[0].numel()
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            new_state[key] = value.clone()
            continue
        _, rest = key[len(prefix) + 1:].split(".", 1)
        layer = int(key[len(prefix) + 1:].split(".", 1)[0])
        if layer in skip:
            continue
        new_key = f"{prefix}.{kept_layers.index(layer)}.{rest}"
        heads, groups = plans[layer] if plans is not None else (None, None)
        neurons = mlp_kept[layer] if mlp_kept is not None else None
        new_state[new_key] = arch.slice_layer_tensor(rest, value, heads, groups, neurons, dims.d_head).contiguous().clone()
    config = type(hf_model.config).from_dict(cfg)
    with _no_init():
        pruned = type(hf_model)(config)
    pruned.load_state_dict(new_state, strict=True)
    pruned.tie_weights()
    return pruned.to(hf_model.device).eval()
