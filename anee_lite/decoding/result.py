"""What a decoding run returns, whatever the strategy: the tokens, the layers each step ran, its timings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class SpeculativeStats:
    """What the draft and verify passes did over one generation.

    ``judged`` counts the drafts the full model compared with its own argmax: every accepted one plus
    the first mismatch of each round (drafts after a mismatch are never looked at). So
    ``acceptance_rate`` = accepted / judged estimates the chance a is the formula's per-token acceptance.
    With a batch, a round keeps the shortest accepted prefix over the rows still generating.
    """

    draft_layers: int  # L: layers the draft runs
    draft_tokens: int  # K: drafts per round (fewer near max_new_tokens)
    rounds: int = 0  # verify passes
    drafted: int = 0  # drafts proposed
    judged: int = 0  # drafts compared with the full model (accepted + first mismatches)
    accepted: int = 0  # drafts kept
    emitted: int = 0  # tokens emitted by verify passes (accepted drafts + one full-model token each)
    draft_seconds: float = 0.0  # time in the K + 1 shallow steps (the last one feeds the verify pass) and K readouts
    verify_seconds: float = 0.0  # time in the deep passes, acceptance and cache rollback

    @property
    def acceptance_rate(self) -> float:
        """Accepted / judged drafts (nan before any draft was judged)."""
        return self.accepted / self.judged if self.judged else float("nan")

    @property
    def tokens_per_verify(self) -> float:
        """Mean tokens emitted per verify pass (between 1 and K + 1)."""
        return self.emitted / self.rounds if self.rounds else float("nan")


@dataclass
class GenerationResult:
    """Everything one greedy generation did, token by token."""

    sequences: Tensor  # [B, T_prompt + n_new] prompt and continuation (padding included)
    prompt_length: int  # T_prompt
    layers_per_token: list[Tensor] = field(default_factory=list)  # per step, [B] layers the new token's step ran
    step_times: list[float] = field(default_factory=list)  # seconds per step (the first includes the prompt)
    kv_propagated_per_step: list[int] = field(default_factory=list)  # per step, K/V entries filled from frozen states
    kv_caught_up_per_step: list[int] = field(default_factory=list)  # per step, blocks run in full past an exit
    depth_per_step: list[int] = field(default_factory=list)  # per step, layers the pass ran (its deepest token's)
    speculative: SpeculativeStats | None = None  # draft/verify statistics of a self-speculative run

    def append(self, next_ids: Tensor, layers: Tensor | int, seconds: float, kv_propagated: int = 0,
               kv_caught_up: int = 0, depth: int | None = None) -> None:
        """Record one generated token per row: ids [B], the layers its step ran, its time, what it filled for
        earlier tokens, and the pass's depth (default: the deepest row's layers; a prompt pass can run deeper)."""
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=1)  # [B, T + 1]
        if isinstance(layers, int):
            layers = torch.full_like(next_ids, layers)
        self.layers_per_token.append(layers)
        self.depth_per_step.append(int(layers.max()) if depth is None else depth)
        self.kv_propagated_per_step.append(kv_propagated)
        self.kv_caught_up_per_step.append(kv_caught_up)
        self.step_times.append(seconds)

    @property
    def kv_propagated(self) -> int:
        """(token, layer) K/V entries filled from an exited token's frozen state, over all steps."""
        return sum(self.kv_propagated_per_step)

    @property
    def kv_caught_up(self) -> int:
        """(token, layer) blocks run in full past a token's exit (``kv_fill="catch_up"``), over all steps."""
        return sum(self.kv_caught_up_per_step)

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
