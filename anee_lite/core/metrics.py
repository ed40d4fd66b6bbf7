"""How close an early-exit prediction is to the full model's: pure functions on logits."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_logits(name: str, logits) -> Tensor:
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() < 2:
        got = f"{logits.dtype} tensor of shape {list(logits.shape)}" if isinstance(logits, Tensor) \
            else type(logits).__name__
        raise TypeError(f"{name} must be a float tensor of logits [..., d_vocab] (e.g. [B, T, d_vocab]), got {got}")
    return logits


def _check_pair(logits, reference_logits) -> None:
    """Both are logits of the same shape: broadcasting [B, T, V] against [T, V] would compare the wrong rows."""
    _check_logits("logits", logits)
    _check_logits("reference_logits", reference_logits)
    if logits.shape != reference_logits.shape:
        raise ValueError(f"logits and reference_logits must have the same shape, got {list(logits.shape)} "
                         f"and {list(reference_logits.shape)}")


def _check_ids(logits, input_ids) -> None:
    """[B, T] integer ids matching [B, T, V] logits, each a valid index into the vocabulary."""
    _check_logits("logits", logits)
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, d_vocab], got {list(logits.shape)}")
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point() or input_ids.is_complex() \
            or input_ids.dtype == torch.bool:
        got = f"a {input_ids.dtype} tensor" if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise TypeError(f"input_ids must be a tensor of integer token ids [B, T], got {got}")
    if input_ids.shape != logits.shape[:2]:
        raise ValueError(f"input_ids must have shape [B, T] = {list(logits.shape[:2])} to match the logits, "
                         f"got {list(input_ids.shape)}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= logits.shape[-1]):
        raise ValueError(f"input_ids must be token ids in [0, {logits.shape[-1] - 1}] (the logits' vocabulary), "
                         f"got values in [{int(input_ids.min())}, {int(input_ids.max())}]")


def _mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """[B, T] bool positions to average over: 0/1 of exactly ``like``'s shape, at least one 1."""
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a tensor of 0/1 (or bools) shaped {list(like.shape)}, got {type(mask).__name__}")
    if mask.shape != like.shape:
        raise ValueError(f"mask must have shape {list(like.shape)} (one entry per position), got {list(mask.shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 (left out) and 1 (counted)")
    mask = mask.bool().to(like.device)
    if not bool(mask.any()):
        raise ValueError("mask selects no position (all 0): there is nothing to average")
    return mask


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) over the last axis, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def entropy(log_p: Tensor) -> Tensor:
    """Shannon entropy (nats) over the last axis."""
    return -(log_p.exp() * log_p).sum(-1)


def top1_agreement(logits: Tensor, reference_logits: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of positions [B, T] whose argmax equals the reference's argmax."""
    _check_pair(logits, reference_logits)
    same = logits.argmax(-1) == reference_logits.argmax(-1)  # [B, T]
    m = _mask(mask, same)
    return float(same[m].float().mean())


def mean_kl(logits: Tensor, reference_logits: Tensor, mask: Tensor | None = None) -> float:
    """Mean KL(reference || logits) in nats over the positions [B, T]."""
    _check_pair(logits, reference_logits)
    kl = kl_divergence(reference_logits.log_softmax(-1), logits.log_softmax(-1))  # [B, T]
    m = _mask(mask, kl)
    return float(kl[m].mean())


def next_token_nll(logits: Tensor, input_ids: Tensor) -> Tensor:
    """[B, T, V] logits and [B, T] ids -> [B, T-1] negative log-likelihood of each next token."""
    _check_ids(logits, input_ids)
    log_probs = logits[:, :-1].log_softmax(-1)  # [B, T-1, V]
    return -log_probs.gather(-1, input_ids[:, 1:, None])[..., 0]  # [B, T-1]


def perplexity(logits: Tensor, input_ids: Tensor, mask: Tensor | None = None) -> float:
    """exp(mean negative log-likelihood) of each next token: logits[:, t] predicts input_ids[:, t + 1]."""
    nll = next_token_nll(logits, input_ids)  # [B, T-1]
    if nll.shape[1] == 0:
        raise ValueError("perplexity needs at least 2 tokens per row (logits[:, t] predicts input_ids[:, t + 1]), "
                         f"got input_ids of shape {list(input_ids.shape)}")
    if mask is not None:  # the checks of a [B, T] mask, then the pairs whose both tokens count
        full = _mask(mask, input_ids)  # [B, T]
        mask = full[:, 1:] & full[:, :-1]  # [B, T-1]
        if not bool(mask.any()):
            raise ValueError("mask leaves no pair of consecutive real tokens to score")
    m = _mask(mask, nll)
    return float(nll[m].mean().exp())
