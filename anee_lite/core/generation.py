"""Greedy generation on the unrolled model, with or without a KV cache, or self-speculatively."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .controller import Controller
from .model import UnrolledModel, check_unrolled
from .validation import check_generate_inputs, check_generation_knobs

if TYPE_CHECKING:
    from .speculative import SpeculativeStats


@dataclass
class GenerationResult:
    """Everything one greedy generation did, token by token."""

    sequences: Tensor  # [B, T_prompt + n_new] prompt and continuation (padding included)
    prompt_length: int  # T_prompt
    layers_per_token: list[Tensor] = field(default_factory=list)  # per step, [B] layers the new token's step ran
    step_times: list[float] = field(default_factory=list)  # seconds per step (the first includes the prompt)
    kv_propagated_per_step: list[int] = field(default_factory=list)  # per step, K/V entries filled from frozen states
    speculative: SpeculativeStats | None = None  # draft/verify statistics of a self-speculative run

    def append(self, next_ids: Tensor, layers: Tensor | int, seconds: float, kv_propagated: int = 0) -> None:
        """Record one generated token per row: ids [B], the layers its step ran, its time."""
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=1)  # [B, T + 1]
        if isinstance(layers, int):
            layers = torch.full_like(next_ids, layers)
        self.layers_per_token.append(layers)
        self.kv_propagated_per_step.append(kv_propagated)
        self.step_times.append(seconds)

    @property
    def kv_propagated(self) -> int:
        """(token, layer) K/V entries filled from an exited token's frozen state, over all steps."""
        return sum(self.kv_propagated_per_step)

    @property
    def new_tokens(self) -> Tensor:
        """[B, n_new] the generated ids."""
        return self.sequences[:, self.prompt_length:]


class StopAtEos:
    """HF generate's EOS rule: once a row emits EOS, its later tokens are padding; stop when all rows have."""

    def __init__(self, batch_size: int, eos_token_id: int | None, pad_token_id: int | None, device):
        self.eos = eos_token_id
        self.pad = eos_token_id if pad_token_id is None else pad_token_id
        self.finished = torch.zeros(batch_size, dtype=torch.bool, device=device)  # [B]

    def filter(self, next_ids: Tensor) -> Tensor:
        """[B] argmax ids -> [B] ids to emit (padding for finished rows); marks rows that emit EOS."""
        if self.eos is None:
            return next_ids
        next_ids = torch.where(self.finished, torch.full_like(next_ids, self.pad), next_ids)
        self.finished |= next_ids == self.eos
        return next_ids

    @property
    def done(self) -> bool:
        return bool(self.finished.all())


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
            :func:`~anee_lite.core.speculative.speculative_generate`): the first ``draft_layers`` layers
            draft ``draft_tokens`` tokens, all layers verify them. The output equals full-depth greedy,
            so exit_layers/controller/use_cache=False do not apply.
        draft_lens: with speculation, the lens the draft reads its token through: None or "logit" for the
            logit lens, or a lens object with ``logits(layer, resid)`` (e.g. a :class:`TunedLens`).
        masks: the forward's sparsity keywords (``skip_layers``, ``head_mask``, ``mlp_mask``,
            ``activation_sparsity``), applied at every step (not with speculation).
    """
    check_unrolled(model)
    input_ids, mask = check_generate_inputs(model, input_ids, attention_mask, max_new_tokens, eos_token_id,
                                            pad_token_id, use_cache)  # [B, T] each
    if draft_layers is not None or draft_tokens is not None or draft_lens is not None:
        if draft_layers is None or draft_tokens is None:
            raise ValueError("self-speculative decoding needs both draft_layers and draft_tokens")
        if exit_layers is not None or controller is not None or not use_cache or masks:
            raise ValueError("draft_layers/draft_tokens decode at full depth with a cache: exit_layers, "
                             "controller, masks and use_cache=False do not apply")
        if isinstance(draft_lens, str):
            if draft_lens != "logit":
                raise ValueError(f"draft_lens must be 'logit' or a lens object here, got {draft_lens!r} "
                                 "(ANEEWrapper.generate loads the shipped tuned lens for draft_lens='tuned')")
            draft_lens = None
        from .speculative import speculative_generate  # it builds on this module's result and EOS rule

        return speculative_generate(model, input_ids, mask, max_new_tokens=max_new_tokens,
                                    draft_layers=draft_layers, draft_tokens=draft_tokens, draft_lens=draft_lens,
                                    eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    masks = check_generation_knobs(model, exit_layers, controller, masks)  # before any step: max_new_tokens may be 0
    result = GenerationResult(sequences=input_ids, prompt_length=input_ids.shape[1])
    stop = StopAtEos(input_ids.shape[0], eos_token_id, pad_token_id, input_ids.device)
    cache = None
    for step in range(max_new_tokens):
        start = time.perf_counter()
        if use_cache:
            step_ids = result.sequences if cache is None else result.sequences[:, -1:]  # [B, T] or [B, 1]
            out = model.forward(step_ids, mask, exit_layers=exit_layers, controller=controller,
                                past_key_values=cache, use_cache=True, logits_to_keep=1, **masks)
            cache = out.past_key_values
        else:
            out = model.forward(result.sequences, mask, exit_layers=exit_layers, controller=controller,
                                logits_to_keep=1, **masks)
        next_ids = stop.filter(out.logits[:, -1].argmax(dim=-1))  # [B, d_vocab] -> [B]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        result.append(next_ids, out.stats.exit_layers[:, -1], time.perf_counter() - start, out.stats.kv_propagated)
        if stop.done:
            break
    return result
