"""Argument checks that fail early with a message naming the parameter and what it accepts.

Nothing is clamped: a value out of range is an error, not a silent fix.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def check_fraction(name: str, value, *, low: float = 0.0, high: float = 1.0) -> float:
    """A real number in [low, high] (bools, NaN and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_int(name: str, value, *, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (high=None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def _check_int_tensor(name: str, t, shape: tuple[int, ...] | None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integers (torch.long), got {t.dtype}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    return t


def check_forward_inputs(model, input_ids, attention_mask, exit_layers, cache, controller, logits_to_keep):
    """Validate the forward's arguments; return ids, the full bool key mask [B, T_past + T], exit layers [B, T]."""
    dims = model.dims
    input_ids = _check_int_tensor("input_ids", input_ids, None)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape [batch, tokens], got {list(input_ids.shape)} "
                         "(use input_ids[None] for a single sequence)")
    B, T = input_ids.shape
    if T == 0 or B == 0:
        raise ValueError(f"input_ids must hold at least one token per row, got shape {list(input_ids.shape)}")
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= dims.d_vocab:
        raise ValueError(f"input_ids must be token ids in [0, {dims.d_vocab - 1}], got values in [{lo}, {hi}]")
    input_ids = input_ids.to(model.device)

    n_past = 0
    if cache is not None:
        if not hasattr(cache, "owner") or cache.owner != id(model) or cache.dims != dims:
            raise ValueError("past_key_values must be a cache returned by this same model (it came from another)")
        if cache.batch_size != B:
            raise ValueError(f"past_key_values holds a batch of {cache.batch_size}, but input_ids has batch {B}")
        n_past = len(cache)
    if n_past + T > dims.n_ctx:
        raise ValueError(f"sequence of {n_past + T} tokens does not fit the model's context window "
                         f"of {dims.n_ctx} tokens (n_ctx)")

    if attention_mask is None:
        key_mask = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        if cache is not None:
            key_mask = torch.cat([cache.attention_mask, key_mask], dim=1)
    else:
        attention_mask = _check_int_tensor("attention_mask", attention_mask.long()
                                           if attention_mask.dtype == torch.bool else attention_mask,
                                           (B, n_past + T))
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
        key_mask = attention_mask.to(device=input_ids.device, dtype=torch.bool)
        if cache is not None and not torch.equal(key_mask[:, :n_past], cache.attention_mask):
            raise ValueError("attention_mask's first columns must repeat the mask of the tokens in past_key_values")

    if controller is not None and exit_layers is not None:
        raise ValueError("pass either exit_layers or controller, not both")
    if exit_layers is None:
        exit_layers = torch.full((B, T), dims.n_layers, dtype=torch.long, device=input_ids.device)
    elif isinstance(exit_layers, numbers.Integral) and not isinstance(exit_layers, bool):
        check_int("exit_layers", exit_layers, low=0, high=dims.n_layers)
        exit_layers = torch.full((B, T), int(exit_layers), dtype=torch.long, device=input_ids.device)
    else:
        exit_layers = _check_int_tensor("exit_layers", exit_layers, (B, T)).to(input_ids.device, torch.long)
        lo, hi = int(exit_layers.min()), int(exit_layers.max())
        if lo < 0 or hi > dims.n_layers:
            raise ValueError(f"exit_layers must be in [0, {dims.n_layers}] (layers each token runs), "
                             f"got values in [{lo}, {hi}]")
    check_int("logits_to_keep", logits_to_keep, low=0, high=T)
    return input_ids, key_mask, exit_layers
