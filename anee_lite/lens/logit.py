"""The logit lens: read the model's prediction off the residual stream after every layer.

Only computation lives here; plots are in :mod:`anee_lite.notebook.logit_lens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.metrics import entropy, kl_divergence
from ..core.model import UnrolledModel, check_unrolled


class LogitLens:
    """The plain logit lens: no translator at any layer."""

    kind = "logit"

    def __init__(self, model: UnrolledModel):
        self.model = check_unrolled(model)
        self.layers: list[int] = list(range(1, model.dims.n_layers))

    def translate(self, layer: int, resid: Tensor) -> Tensor:
        """[..., d] -> [..., d]; the identity."""
        return resid

    def logits(self, layer: int, resid: Tensor) -> Tensor:
        """[..., d] residual after ``layer`` layers -> [..., d_vocab] lens logits."""
        return self.model.logits_from_resid(self.translate(layer, resid))

    def readout(self, resid: Tensor, exit_layers: Tensor) -> Tensor:
        """[B, T, d] frozen residuals and [B, T] exit layers -> [B, T, d] residuals ready to unembed."""
        out = resid
        for layer in exit_layers.unique().tolist():
            if layer in self._translated():
                at = (exit_layers == layer)[..., None]  # [B, T, 1]
                out = torch.where(at, self.translate(layer, resid), out)
        return out

    def _translated(self) -> set[int]:
        return set()

    def translator_macs(self, layer: int) -> int:
        """Multiply-adds one translation at ``layer`` costs (0 for the logit lens)."""
        return 0


@dataclass
class LensResult:
    """Per-layer predictions for one batch. L = layers + 1 (row 0 reads the embeddings)."""

    logits: Tensor  # [L, B, T, d_vocab] lens logits; row -1 equals the model's output
    log_probs: Tensor  # [L, B, T, d_vocab]
    top_tokens: Tensor  # [L, B, T] argmax at each layer
    top_probs: Tensor  # [L, B, T] its probability
    kl_to_final: Tensor  # [L, B, T] KL(final || layer) in nats
    final_token_rank: Tensor  # [L, B, T] rank of the final top-1 under each layer (0 = top)
    entropy: Tensor  # [L, B, T] in nats


# A LensResult keeps [L, B, T, d_vocab] logits and log-probabilities, and computing its KL needs a few
# more of that size: past 2**28 values each (1 GiB in float32) a long prompt would exhaust memory and
# kill a notebook's kernel, so it is refused with the number of tokens that fit instead.
MAX_LENS_VALUES = 2**28


def _check_lens_size(model: UnrolledModel, L: int, B: int, T: int) -> None:
    per_token = L * model.dims.d_vocab
    if B * T * per_token > MAX_LENS_VALUES:
        raise ValueError(f"the lens over {B} x {T} tokens would hold {B * T * per_token * 4 / 2**30:.1f} GiB of "
                         f"logits per tensor ({L} layers x {model.dims.d_vocab} vocabulary each); pass at most "
                         f"{MAX_LENS_VALUES // per_token} tokens (batch x length) at a time")


def lens_from_resid(model: UnrolledModel, resid_stack: Tensor) -> LensResult:
    """Apply the lens to a stack of residuals [L, B, T, d_model] (the last one is the model's output).

    Raises:
        ValueError: for a stack whose [L, B, T, d_vocab] logits would exceed ``MAX_LENS_VALUES``.
    """
    d = model.dims.d_model
    if not isinstance(resid_stack, Tensor) or resid_stack.dim() != 4 or resid_stack.shape[-1] != d:
        shape = list(resid_stack.shape) if isinstance(resid_stack, Tensor) else type(resid_stack).__name__
        raise ValueError(f"resid_stack must be a tensor [L, B, T, d_model={d}], got {shape}")
    _check_lens_size(model, *resid_stack.shape[:3])
    logits = model.logits_from_resid(resid_stack)  # [L, B, T, d_model] -> [L, B, T, d_vocab]
    log_probs = logits.log_softmax(-1)
    final = log_probs[-1]  # [B, T, d_vocab]
    top_probs, top_tokens = log_probs.max(-1)  # [L, B, T] each
    final_top = final.argmax(-1)  # [B, T]
    final_top_logit = logits.gather(-1, final_top[None, ..., None].expand(logits.shape[0], -1, -1, 1))  # [L, B, T, 1]
    rank = (logits > final_top_logit).sum(-1)  # tokens scored above the final choice
    return LensResult(
        logits=logits,
        log_probs=log_probs,
        top_tokens=top_tokens,
        top_probs=top_probs.exp(),
        kl_to_final=kl_divergence(final[None], log_probs),
        final_token_rank=rank,
        entropy=entropy(log_probs),
    )


@torch.no_grad()
def logit_lens(model: UnrolledModel, input_ids: Tensor, attention_mask: Tensor | None = None) -> LensResult:
    """Run the full model once and decode the residual stream after every layer.

    Args:
        model: the unrolled model.
        input_ids: [B, T] token ids.
        attention_mask: [B, T] optional padding mask.
    """
    if isinstance(input_ids, Tensor) and input_ids.dim() == 2:  # before the forward, not after it
        _check_lens_size(model, model.dims.n_layers + 1, *input_ids.shape)
    out = model.forward(input_ids, attention_mask, return_resid=True)
    return lens_from_resid(model, out.resid_stack())
