"""How close an early-exit prediction is to the full model's: pure functions on logits."""

from __future__ import annotations

import torch
from torch import Tensor


def _mask(mask: Tensor | None, like: Tensor) -> Tensor:
    return torch.ones(like.shape, dtype=torch.bool, device=like.device) if mask is None else mask.bool()


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) over the last axis, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def entropy(log_p: Tensor) -> Tensor:
    """Shannon entropy (nats) over the last axis."""
    return -(log_p.exp() * log_p).sum(-1)


def top1_agreement(logits: Tensor, reference_logits: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of positions [B, T] whose argmax equals the reference's argmax."""
    same = logits.argmax(-1) == reference_logits.argmax(-1)  # [B, T]
    m = _mask(mask, same)
    return float(same[m].float().mean())


def mean_kl(logits: Tensor, reference_logits: Tensor, mask: Tensor | None = None) -> float:
    """Mean KL(reference || logits) in nats over the positions [B, T]."""
    kl = kl_divergence(reference_logits.log_softmax(-1), logits.log_softmax(-1))  # [B, T]
    m = _mask(mask, kl)
    return float(kl[m].mean())


def next_token_nll(logits: Tensor, input_ids: Tensor) -> Tensor:
    """[B, T, V] logits and [B, T] ids -> [B, T-1] negative log-likelihood of each next token."""
    log_probs = logits[:, :-1].log_softmax(-1)  # [B, T-1, V]
    return -log_probs.gather(-1, input_ids[:, 1:, None])[..., 0]  # [B, T-1]


def perplexity(logits: Tensor, input_ids: Tensor, mask: Tensor | None = None) -> float:
    """exp(mean negative log-likelihood) of each next token: logits[:, t] predicts input_ids[:, t + 1]."""
    nll = next_token_nll(logits, input_ids)  # [B, T-1]
    m = _mask(None if mask is None else mask[:, 1:].bool() & mask[:, :-1].bool(), nll)
    return float(nll[m].mean().exp())
