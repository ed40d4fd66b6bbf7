"""Greedy generation on the unrolled model, with or without a KV cache."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .controller import Controller
from .model import UnrolledModel
from .validation import check_generate_inputs


@dataclass
class GenerationResult:
    """Everything one greedy generation did, token by token."""

    sequences: Tensor  # [B, T_prompt + n_new] prompt and continuation (padding included)
    prompt_length: int  # T_prompt
    layers_per_token: list[Tensor] = field(default_factory=list)  # per step, [B] layers the new token's step ran
    step_times: list[float] = field(default_factory=list)  # seconds per step (the first includes the prompt)
    kv_propagated_per_step: list[int] = field(default_factory=list)  # per step, K/V entries filled from frozen states

    @property
    def kv_propagated(self) -> int:
        """(token, layer) K/V entries filled from an exited token's frozen state, over all steps."""
        return sum(self.kv_propagated_per_step)

    @property
    def new_tokens(self) -> Tensor:
        """[B, n_new] the generated ids."""
        return self.sequences[:, self.prompt_length:]


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
    """
    input_ids, mask = check_generate_inputs(model, input_ids, attention_mask, max_new_tokens, eos_token_id,
                                            pad_token_id, use_cache)  # [B, T] each
    B = input_ids.shape[0]
    pad = eos_token_id if pad_token_id is None else pad_token_id
    result = GenerationResult(sequences=input_ids, prompt_length=input_ids.shape[1])
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    cache = None
    for step in range(max_new_tokens):
        start = time.perf_counter()
        if use_cache:
            step_ids = result.sequences if cache is None else result.sequences[:, -1:]  # [B, T] or [B, 1]
            out = model.forward(step_ids, mask, exit_layers=exit_layers, controller=controller,
                                past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
        else:
            out = model.forward(result.sequences, mask, exit_layers=exit_layers, controller=controller,
                                logits_to_keep=1)
        next_ids = out.logits[:, -1].argmax(dim=-1)  # [B, d_vocab] -> [B]
        if eos_token_id is not None:
            next_ids = torch.where(finished, torch.full_like(next_ids, pad), next_ids)
            finished |= next_ids == eos_token_id
        result.sequences = torch.cat([result.sequences, next_ids[:, None]], dim=1)  # [B, T + 1]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        result.layers_per_token.append(out.stats.exit_layers[:, -1])
        result.kv_propagated_per_step.append(out.stats.kv_propagated)
        result.step_times.append(time.perf_counter() - start)
        if bool(finished.all()):
            break
    return result
