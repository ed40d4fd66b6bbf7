"""Activation patching: which activation carries the answer, found by copying it from a clean run into a corrupted one.

Run a clean prompt ("The Eiffel Tower is in the city of") and a corrupted one of the same length ("The
Colosseum is in the city of"); copy one activation (a layer's residual, at one position) from the clean
run into the corrupted run, and measure how much of the clean answer comes back with the *logit
difference* between the clean answer and the corrupted one (" Paris" minus " Rome"). Where patching
restores the answer, that activation carries it; where it does not, the computation there can be
skipped or pruned without losing this answer.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.hooks import HOOK_POINTS, check_hook_names
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_int
from .ablation import record, run_and_record

RESID_POINTS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")
# A sweep runs a layer's patches as batch rows; each row's logits are [T, d_vocab], so the rows of one forward
# are capped to keep its logits under 2**26 floats (256 MB in float32).
LOGITS_PER_FORWARD = 2**26


def logit_difference(logits: Tensor, correct: int, wrong: int, position: int = -1) -> Tensor:
    """[B, T, d_vocab] logits -> [B]: logit of ``correct`` minus logit of ``wrong`` at ``position``."""
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise TypeError(f"logits must be a [batch, positions, d_vocab] tensor, got "
                        f"{list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}")
    V, T = logits.shape[-1], logits.shape[1]
    correct = check_int("correct", correct, low=0, high=V - 1)
    wrong = check_int("wrong", wrong, low=0, high=V - 1)
    position = check_int("position", position, low=-T, high=T - 1)
    return logits[:, position, correct] - logits[:, position, wrong]  # [B]


def patch(model: UnrolledModel, clean_ids: Tensor, corrupted_ids: Tensor, name: str,
          positions: list[int] | None = None, **forward_kwargs):
    """The corrupted run with the activation ``name`` at ``positions`` (None: all) copied from the clean run.

    Both prompts must have the same shape (patching aligns positions). Returns the corrupted run's
    :class:`~anee_lite.core.model.ForwardOutput`. Keyword arguments go to both forwards.
    """
    model = check_unrolled(model)
    if not isinstance(name, str):
        raise TypeError(f"name must be one hook name such as 'blocks.3.hook_resid_pre', got {name!r}")
    (name,) = check_hook_names(model.dims, name)
    _same_shape(clean_ids, corrupted_ids)
    T = corrupted_ids.shape[1]
    if positions is not None:
        positions = sorted({check_int("positions", p, low=-T, high=T - 1) % T for p in positions})
    clean = record(model, clean_ids, [name], **forward_kwargs)[name]

    def paste(t: Tensor, hook_name: str) -> Tensor:
        if positions is None:
            return clean
        t = t.clone()
        if name.endswith("hook_pattern"):  # [B, H, T, T_k]: query positions are dim 2
            t[:, :, positions] = clean[:, :, positions]
        else:  # [B, T, ...]
            t[:, positions] = clean[:, positions]
        return t

    return model(corrupted_ids, hooks={name: paste}, **forward_kwargs)


def patching_sweep(model: UnrolledModel, clean_ids: Tensor, corrupted_ids: Tensor, correct: int, wrong: int,
                   point: str = "hook_resid_pre", progress: bool = True) -> Tensor:
    """[n_layers, T]: how much of the clean logit difference patching each (layer, position) restores.

    Entry (l, t) is ``(LD_patched - LD_corrupted) / (LD_clean - LD_corrupted)`` for the activation
    ``blocks.{l}.{point}`` at position t copied from the clean run (the inputs are one prompt each, ``[1, T]``):
    1 restores the clean answer, 0 changes nothing. The logit difference is read at the last position. A
    layer's patches run as the rows of one batch (several batches when the logits would not fit in memory).

    Args:
        point: a residual hook point, ``"hook_resid_pre"`` (default), ``"hook_resid_mid"`` or ``"hook_resid_post"``.
        progress: show a progress bar over the layers.
    """
    model = check_unrolled(model)
    if point not in RESID_POINTS:
        raise ValueError(f"point must be one of {list(RESID_POINTS)} (a residual stream, one vector per position), "
                         f"got {point!r}; other hook points: {list(HOOK_POINTS)} with patch()")
    _same_shape(clean_ids, corrupted_ids)
    if clean_ids.shape[0] != 1:
        raise ValueError(f"clean_ids and corrupted_ids must be one prompt each, shape [1, T], got {list(clean_ids.shape)}")
    names = [f"blocks.{l}.{point}" for l in range(model.dims.n_layers)]
    clean_run, clean_acts = run_and_record(model, clean_ids, names)  # one clean pass: activations and logits
    ld_clean = float(logit_difference(clean_run.logits, correct, wrong)[0])
    ld_corrupted = float(logit_difference(model(corrupted_ids).logits, correct, wrong)[0])
    if abs(ld_clean - ld_corrupted) < 1e-6:
        raise ValueError(f"the clean and corrupted prompts give the same logit difference ({ld_clean:.4g}): nothing "
                         "for patching to restore; choose prompts whose answers differ")
    T = clean_ids.shape[1]
    per_forward = max(1, LOGITS_PER_FORWARD // (T * model.dims.d_vocab))  # patches side by side, memory-bounded
    restored = torch.zeros(model.dims.n_layers, T)
    for layer in tqdm(range(model.dims.n_layers), desc=f"patching {point}", disable=not progress):
        clean = clean_acts[names[layer]][0]  # [T, d_model]
        for start in range(0, T, per_forward):
            positions = torch.arange(start, min(T, start + per_forward))  # [R]: row r patches position start + r

            def paste(resid: Tensor, name: str, clean=clean, positions=positions) -> Tensor:
                resid = resid.clone()  # [R, T, d_model]
                rows = torch.arange(len(positions), device=resid.device)  # [R]
                resid[rows, positions.to(resid.device)] = clean[positions].to(resid.dtype)  # [R, d_model]
                return resid

            batch = corrupted_ids.expand(len(positions), -1)  # [1, T] -> [R, T]
            logits = model(batch, hooks={names[layer]: paste}).logits  # [R, T, d_vocab]
            ld = logit_difference(logits, correct, wrong).float().cpu()  # [R]
            restored[layer, positions] = (ld - ld_corrupted) / (ld_clean - ld_corrupted)
    return restored


def _same_shape(clean_ids, corrupted_ids) -> None:
    for name, ids in (("clean_ids", clean_ids), ("corrupted_ids", corrupted_ids)):
        if not isinstance(ids, Tensor) or ids.dim() != 2:
            raise TypeError(f"{name} must be a [batch, positions] tensor of token ids, got "
                            f"{list(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__}")
    if clean_ids.shape != corrupted_ids.shape:
        raise ValueError(f"clean_ids {list(clean_ids.shape)} and corrupted_ids {list(corrupted_ids.shape)} must have "
                         "the same shape: patching copies position t of one run into position t of the other")
