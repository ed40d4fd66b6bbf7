"""Greedy generation on the unrolled model, with or without a KV cache, or self-speculatively."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..core.cache import resolve_kv_fill
from ..core.controller import Controller
from ..core.masks import check_masks
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_generate_inputs, check_generation_knobs
from .result import GenerationResult, StopAtEos
from .speculative import speculative_generate


@torch.no_grad()
def greedy_generate(
    model: UnrolledModel,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int,
    exit_layers: int | None = None,
    controller: Controller | None = None,
    use_cache: bool = True,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    draft_layers: int | None = None,
    draft_tokens: int | None = None,
    draft_lens=None,
    masks: dict | None = None,
    kv_fill: str | None = None,
) -> GenerationResult:
    """Append the argmax token ``max_new_tokens`` times, stopping once every row has emitted EOS.

    Args:
        model: the unrolled model.
        input_ids: [B, T] prompt ids, left-padded if rows differ in length.
        attention_mask: [B, T] 1 for real tokens, 0 for (left) padding; every row ends in a real
            token (right padding is refused: the continuation would follow the padding).
        max_new_tokens: upper bound on generated tokens; the prompt plus these must fit n_ctx.
        exit_layers: layers every token runs (a static exit), 0..n_layers; None = all layers.
        controller: decides each token's exit on the fly instead.
        use_cache: keep keys/values between steps (False recomputes the whole context, like the seed).
        eos_token_id: stop a row once it emits this id (rows that stopped get ``pad_token_id``).
        pad_token_id: filler after EOS; defaults to ``eos_token_id``.
        draft_layers, draft_tokens: given together, decode self-speculatively (see
            :func:`~anee_lite.decoding.speculative.speculative_generate`): the first ``draft_layers`` layers
            draft ``draft_tokens`` tokens, all layers verify them. The output equals full-depth greedy,
            so exit_layers/controller/use_cache=False do not apply.
        draft_lens: with speculation, the lens the draft reads its token through: None or "logit" for the
            logit lens, or a lens object with ``logits(layer, resid)`` (e.g. a :class:`TunedLens`).
        masks: the forward's sparsity keywords (``skip_layers``, ``head_mask``, ``mlp_mask``,
            ``activation_sparsity``), applied at every step (not with speculation).
        kv_fill: how an exited token's deeper keys/values are filled (``UnrolledModel.forward``):
            ``"propagate"`` or ``"catch_up"`` (exact keys/values; no FLOPs saved, only weight reads).
            None (default): ``"catch_up"`` with a controller, whose calibrated promise holds only with exact
            keys/values, else ``"propagate"``.
    """
    check_unrolled(model)
    input_ids, mask = check_generate_inputs(model, input_ids, attention_mask, max_new_tokens, eos_token_id,
                                            pad_token_id, use_cache)  # [B, T] each
    kv_fill = resolve_kv_fill(kv_fill, controller)
    if draft_layers is not None or draft_tokens is not None or draft_lens is not None:
        if draft_layers is None or draft_tokens is None:
            raise ValueError("self-speculative decoding needs both draft_layers and draft_tokens")
        if exit_layers is not None or controller is not None or not use_cache or masks or kv_fill != "propagate":
            raise ValueError("draft_layers/draft_tokens decode at full depth with a cache: exit_layers, "
                             "controller, masks, kv_fill and use_cache=False do not apply")
        if isinstance(draft_lens, str):
            if draft_lens != "logit":
                raise ValueError(f"draft_lens must be 'logit' or a lens object here, got {draft_lens!r} "
                                 "(ANEEWrapper.generate loads the shipped tuned lens for draft_lens='tuned')")
            draft_lens = None
        return speculative_generate(model, input_ids, mask, max_new_tokens=max_new_tokens,
                                    draft_layers=draft_layers, draft_tokens=draft_tokens, draft_lens=draft_lens,
                                    eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    check_generation_knobs(model, exit_layers, controller)  # before any step: max_new_tokens may be 0
    masks = check_masks(model.dims, masks)
    result = GenerationResult(sequences=input_ids, prompt_length=input_ids.shape[1])
    stop = StopAtEos(input_ids.shape[0], eos_token_id, pad_token_id, input_ids.device)
    cache = None
    for step in range(max_new_tokens):
        start = time.perf_counter()
        if use_cache:
            step_ids = result.sequences if cache is None else result.sequences[:, -1:]  # [B, T] or [B, 1]
            out = model.forward(step_ids, mask, exit_layers=exit_layers, controller=controller,
                                past_key_values=cache, use_cache=True, logits_to_keep=1, kv_fill=kv_fill, **masks)
            cache = out.past_key_values
        else:
            out = model.forward(result.sequences, mask, exit_layers=exit_layers, controller=controller,
                                logits_to_keep=1, kv_fill=kv_fill, **masks)
        next_ids = stop.filter(out.logits[:, -1].argmax(dim=-1))  # [B, d_vocab] -> [B]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        result.append(next_ids, out.stats.exit_layers[:, -1], time.perf_counter() - start, out.stats.kv_propagated,
                      out.stats.kv_caught_up, out.stats.layers_executed)
        if stop.done:
            break
    return result
