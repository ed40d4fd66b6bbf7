"""Direct logit attribution: the logit lens applied to what one head writes into the residual stream.

Each head adds ``z_h @ W_O[h]`` to the residual. Read through the final norm (its scale frozen at the final
residual, as the lens sees it) and the unembedding, that vector raises or lowers the logit of the token the
model predicts: the head's *direct effect*. A head whose direct effect is small everywhere is a candidate for
removal, though it may still matter through later layers (which ablation then measures).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.metrics import top1_agreement
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_input_ids, check_int
from .ablation import ablate_heads, run_and_record


def per_head_effects(z: Tensor, W_O: Tensor, readout: Tensor) -> Tensor:
    """Each head's signed direct effect at each position: ``(z_h @ W_O[h]) @ readout``.

    Args:
        z: [..., H, D] the heads' outputs before ``W_O`` (``attn.hook_z``).
        W_O: [H * D, d_model] the output matrix (head ``h`` owns rows ``h * D:(h + 1) * D``).
        readout: [..., d_model] the read-out direction at each position (:meth:`Architecture.lens_readout`).

    Returns:
        [..., H].
    """
    H, D = z.shape[-2], z.shape[-1]
    per_head = torch.einsum("...hd,hdm->...hm", z, W_O.view(H, D, -1))  # [..., H, d_model]: what each head adds
    return (per_head * readout[..., None, :]).sum(-1)  # [..., H]


def head_direct_effects(model: UnrolledModel, input_ids: Tensor, targets: Tensor | None = None) -> Tensor:
    """Each head's mean absolute direct effect on the logit of the next token.

    Args:
        model: the model (an :class:`UnrolledModel`).
        input_ids: [B, T] token ids (no padding: every position counts).
        targets: [B, T] the token whose logit each position reads; default: the full model's prediction.

    Returns:
        [n_layers, n_heads]: mean over positions of ``|(z_h @ W_O[h]) @ readout|`` (:func:`per_head_effects`),
        with ``readout`` from :meth:`Architecture.lens_readout` at the final residual.
    """
    model = check_unrolled(model)
    dims, arch = model.dims, model.arch
    input_ids = check_input_ids(input_ids, dims.d_vocab)
    names = [f"blocks.{l}.attn.hook_z" for l in range(dims.n_layers)]
    final_name = f"blocks.{dims.n_layers - 1}.hook_resid_post"
    out, acts = run_and_record(model, input_ids, [*names, final_name])
    if targets is None:
        targets = out.logits.argmax(-1)  # [B, T]
    elif not isinstance(targets, Tensor) or tuple(targets.shape) != tuple(input_ids.shape):
        shape = list(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must be token ids shaped like input_ids {list(input_ids.shape)}, got {shape}")
    else:
        targets = check_input_ids(targets, dims.d_vocab)
    readout = arch.lens_readout(acts[final_name], targets)  # [B, T, d]
    return torch.stack([per_head_effects(acts[name], arch.blocks[l].W_O, readout).abs().mean((0, 1))
                        for l, name in enumerate(names)])  # [n_layers, n_heads]


def heads_in_order(order: Tensor, n_heads: int, k: int) -> dict[int, list[int]]:
    """The first ``k`` heads of ``order`` (flat indices ``layer * n_heads + head``) as ``{layer: [head, ...]}``."""
    n_heads = check_int("n_heads", n_heads, low=1)
    if not isinstance(order, Tensor) or order.dim() != 1 or order.is_floating_point():
        raise TypeError("order must be a 1-d tensor of flat head indices (e.g. effects.flatten().argsort())")
    k = check_int("k", k, low=0, high=order.numel())
    chosen: dict[int, list[int]] = {}
    for i in order[:k].tolist():
        chosen.setdefault(i // n_heads, []).append(i % n_heads)  # flat index -> (layer, head)
    return chosen


def ablation_curve(model: UnrolledModel, input_ids: Tensor, order: Tensor, counts) -> list[float]:
    """Top-1 agreement with the full model after zero-ablating the first ``k`` heads of ``order``, for each k.

    Args:
        model: the model (an :class:`UnrolledModel`).
        input_ids: [B, T] token ids.
        order: flat head indices ``layer * n_heads + head``, the first removed first (e.g. ascending direct effect).
        counts: how many heads to remove at each point (0 gives 1.0).

    Returns:
        One agreement per count.
    """
    model = check_unrolled(model)
    input_ids = check_input_ids(input_ids, model.dims.d_vocab)
    if order.numel() != model.dims.n_layers * model.dims.n_heads:
        raise ValueError(f"order must rank all {model.dims.n_layers * model.dims.n_heads} heads "
                         f"(n_layers * n_heads), got {order.numel()}")
    full = model(input_ids).logits  # [B, T, d_vocab]
    out = []
    for k in counts:
        heads = heads_in_order(order, model.dims.n_heads, k)
        logits = model(input_ids, hooks=ablate_heads(model, heads)).logits if heads else full
        out.append(top1_agreement(logits, full))
    return out
