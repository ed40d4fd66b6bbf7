"""Which layers, heads and neurons matter least: one importance score per lever, each from its paper.

* Layers: Block Influence (ShortGPT, Men et al. 2024, arXiv:2403.03853): ``1 - cos(resid_pre, resid_post)``
  averaged over tokens. A block that barely turns the residual stream can go.
* Heads: Michel, Levy and Neubig 2019 (arXiv:1905.10650): put a gate ``xi_h = 1`` on every head's
  output and take ``E_x |dL/dxi_h|``, the loss's sensitivity to removing the head, normalised per layer.
* Neurons: Wanda-style (Sun et al. 2023, arXiv:2306.11695), structured: ``||h_j||_2`` over the
  calibration tokens times ``||W_out[j, :]||_2``, what neuron j can write into the residual stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.metrics import next_token_nll
from ..core.model import UnrolledModel
from ..core.validation import check_input_ids, check_int


def _check_ids(model: UnrolledModel, input_ids) -> Tensor:
    input_ids = check_input_ids(input_ids, model.dims.d_vocab)  # [B, T]
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must hold at least 2 tokens per row, got shape {list(input_ids.shape)}")
    return input_ids.to(model.device)


@torch.no_grad()
def block_influence(model: UnrolledModel, input_ids: Tensor) -> Tensor:
    """ShortGPT's Block Influence of every layer: [n_layers], ``1 - mean cos(resid_pre, resid_post)``."""
    input_ids = _check_ids(model, input_ids)
    acts = model(input_ids, return_resid=True).activations
    scores = []
    for layer in range(model.dims.n_layers):
        pre, post = acts[f"blocks.{layer}.hook_resid_pre"], acts[f"blocks.{layer}.hook_resid_post"]  # [B, T, d]
        scores.append(1 - F.cosine_similarity(pre, post, dim=-1).mean())  # [B, T] -> []
    return torch.stack(scores)  # [n_layers]


def head_importance(model: UnrolledModel, input_ids: Tensor, *, chunk: int = 64, normalize: bool = True) -> Tensor:
    """Michel et al.'s gradient head importance [n_layers, n_heads] on calibration text.

    Args:
        model: the unrolled model.
        input_ids: [B, T] calibration tokens; each row is cut into examples of ``chunk`` tokens.
        chunk: tokens per example (>= 2): the expectation of |dL/dxi| is over examples.
        normalize: divide each layer's scores by their L2 norm, as the paper does before ranking globally.
    """
    input_ids = _check_ids(model, input_ids)
    chunk = check_int("chunk", chunk, low=2)
    dims = model.dims
    total = torch.zeros(dims.n_layers, dims.n_heads)
    for start in range(0, input_ids.shape[1] - 1, chunk):
        ids = input_ids[:, start:start + chunk]  # [B, <= chunk]
        if ids.shape[1] < 2:
            break
        xi = torch.ones(dims.n_layers, dims.n_heads, requires_grad=True)  # the head gates, all open
        with torch.enable_grad():
            logits = model.forward_with_grad(ids, head_mask=xi).logits  # [B, t, d_vocab]
            loss = next_token_nll(logits, ids).mean()
            (grad,) = torch.autograd.grad(loss, xi)  # [n_layers, n_heads]
        total += grad.abs()
    if normalize:
        total = total / total.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return total


@torch.no_grad()
def neuron_importance(model: UnrolledModel, input_ids: Tensor) -> Tensor:
    """Wanda-style structured importance of every MLP neuron: [n_layers, d_mlp].

    ``||h_j||_2`` over all calibration tokens times the norm of neuron j's row of the down
    projection ``W_out`` [d_mlp, d_model] (the same weight name in every architecture).
    """
    input_ids = _check_ids(model, input_ids)
    dims = model.dims
    acts = model(input_ids, return_mlp_hidden=True).activations
    scores = []
    for layer in range(dims.n_layers):
        hidden = acts[f"blocks.{layer}.mlp.hook_post"]  # [B, T, d_mlp]
        scores.append(hidden.flatten(0, 1).norm(dim=0) * model.arch.blocks[layer].W_out.norm(dim=-1))  # [d_mlp] * [d_mlp]
    return torch.stack(scores)  # [n_layers, d_mlp]
