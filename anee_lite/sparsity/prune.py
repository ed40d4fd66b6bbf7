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

from ..core.architectures import from_hf
from ..core.validation import check_hf_model, check_sparsity


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


def _rows(w: Tensor, idx: Tensor, width: int) -> Tensor:
    """Rows of [n * width, ...] grouped in blocks of ``width``: keep blocks ``idx``."""
    return w.view(-1, width, *w.shape[1:])[idx].reshape(-1, *w.shape[1:])


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
    dims = _dims_of(hf_model)
    skip, head_mask, mlp_mask, _ = check_sparsity(dims, skip_layers, head_mask, mlp_mask, None)
    if len(skip) == dims.n_layers:
        raise ValueError("skip_layers would delete every layer; keep at least one")
    mlp_kept = _kept(mlp_mask, dims.d_mlp, "mlp_mask")
    if dims.architecture == "gpt2":
        if head_mask is not None:
            raise ValueError("head pruning needs a Llama-family model: HF's GPT-2 derives the head width "
                             "from n_embd / n_head; use head_mask in the forward instead")
        return _build(hf_model, skip, None, mlp_kept, dims)
    plans, n_heads, n_kv = _head_plan(head_mask, dims.n_heads, dims.n_kv_heads, dims.n_layers)
    return _build(hf_model, skip, plans, mlp_kept, dims, n_heads=n_heads, n_kv=n_kv)


def _dims_of(hf_model):
    """The model's :class:`ModelDims` without re-laying out its weights (a throwaway deep copy is too costly)."""
    from ..core.architectures import CONVERTERS

    model_type = getattr(hf_model.config, "model_type", None)
    if model_type not in CONVERTERS:
        from_hf(hf_model)  # raises the usual "not supported" error
    cfg = hf_model.config
    if model_type == "gpt2":
        d_mlp = hf_model.transformer.h[0].mlp.c_fc.weight.shape[1]
        n_heads = cfg.n_head
        return _dims("gpt2", cfg.n_embd, n_heads, n_heads, cfg.n_embd // n_heads, d_mlp, cfg.n_layer,
                     hf_model.lm_head.weight.shape[0], cfg.n_positions)
    layer = hf_model.model.layers[0]
    n_heads = cfg.num_attention_heads
    return _dims("llama", cfg.hidden_size, n_heads, cfg.num_key_value_heads or n_heads,
                 layer.self_attn.q_proj.weight.shape[0] // n_heads, layer.mlp.gate_proj.weight.shape[0],
                 cfg.num_hidden_layers, hf_model.lm_head.weight.shape[0], cfg.max_position_embeddings)


def _dims(*values):
    from ..core.architectures import ModelDims

    return ModelDims(*values)


def _build(hf_model, skip, plans, mlp_kept, dims, n_heads=None, n_kv=None):
    cfg = hf_model.config.to_dict()
    kept_layers = [layer for layer in range(dims.n_layers) if layer not in skip]
    state = hf_model.state_dict()
    new_state = {}
    if dims.architecture == "gpt2":
        prefix, cfg["n_layer"] = "transformer.h", len(kept_layers)
        if mlp_kept is not None:
            cfg["n_inner"] = mlp_kept[0].numel()
    else:
        prefix, cfg["num_hidden_layers"] = "model.layers", len(kept_layers)
        if getattr(hf_model.config, "layer_types", None):
            cfg["layer_types"] = [hf_model.config.layer_types[i] for i in kept_layers]
        if plans is not None:
            cfg.update(num_attention_heads=n_heads, num_key_value_heads=n_kv, head_dim=dims.d_head)
        if mlp_kept is not None:
            cfg["intermediate_size"] = mlp_kept[0].numel()
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            new_state[key] = value.clone()
            continue
        _, rest = key[len(prefix) + 1:].split(".", 1)
        layer = int(key[len(prefix) + 1:].split(".", 1)[0])
        if layer in skip:
            continue
        new_key = f"{prefix}.{kept_layers.index(layer)}.{rest}"
        new_state[new_key] = _slice(rest, value, layer, plans, mlp_kept, dims).contiguous().clone()
    config = type(hf_model.config).from_dict(cfg)
    with _no_init():
        pruned = type(hf_model)(config)
    pruned.load_state_dict(new_state, strict=True)
    pruned.tie_weights()
    return pruned.to(hf_model.device).eval()


def _slice(name: str, w: Tensor, layer: int, plans, mlp_kept, dims) -> Tensor:
    """One tensor of one kept layer, its removed heads' and neurons' slices cut out."""
    D = dims.d_head
    if mlp_kept is not None:
        neurons = mlp_kept[layer]
        if name in ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias"):
            return w[neurons]  # [d_mlp, d] (out, in) -> kept rows
        if name == "mlp.down_proj.weight":
            return w[:, neurons]  # [d, d_mlp] -> kept columns
        if name in ("mlp.c_fc.weight", "mlp.c_fc.bias"):
            return w[..., neurons]  # Conv1D [d, d_mlp] -> kept columns
        if name == "mlp.c_proj.weight":
            return w[neurons]  # Conv1D [d_mlp, d] -> kept rows
    if plans is not None:
        heads, groups = plans[layer]
        if name in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
            return _rows(w, heads, D)  # [H * D, ...] -> kept heads
        if name in ("self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.k_proj.bias",
                    "self_attn.v_proj.bias"):
            return _rows(w, groups, D)  # [K * D, ...] -> kept groups
        if name == "self_attn.o_proj.weight":
            return _rows(w.t(), heads, D).t()  # [d, H * D] -> kept heads' columns
    return w
