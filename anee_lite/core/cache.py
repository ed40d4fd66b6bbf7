"""A KV cache that stays exact when tokens leave the model early.

A token that exits after layer L never computes keys and values for the layers above L, yet a
later token that runs deeper will attend to it there. We fill those entries the way CALM does
(state propagation): the exited token's frozen residual goes through the deeper layer's input norm
and K/V projections (and RoPE) only. We do it *lazily*: the cache keeps every token's frozen
residual and fills a layer's missing entries the first time some later token runs that layer.
The values are the same as filling them eagerly at exit time, but a static exit (every token
stops at the same layer) never pays for layers nobody reaches.

The alternative, running the skipped layers in full for the exited tokens later (a "catch-up"
pass), gives the keys/values the full model would have had, but costs the FLOPs the exit saved.
Propagation is what CALM used; it is not free either: on SmolLM2-135M most of the agreement early
exit loses is on later tokens that ran every layer and attended to propagated entries
(``benchmarks/bench_propagation.py``). A catch-up run side by side with the next token (FREE, Bae
et al. 2023) would share that token's weight reads, which is what a decoding step on a CPU pays for.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from .architectures import Architecture, ModelDims
from .masks import Sparsity
from .validation import check_int


class KVCache:
    """Keys and values per layer, plus each token's frozen residual for lazy propagation.

    Attributes:
        keys, values: per layer, [B, K', T_l, d_head] with K' the key/value groups that run there
            (fewer than n_kv_heads when a head mask removes whole groups); T_l can lag behind
            ``len(self)`` for layers that no token has needed since some tokens exited below them.
        resid: [B, T, d_model] the residual each token left the model with.
        positions: [B, T] position ids used for the rotary embedding of late-filled keys.
        attention_mask: [B, T] bool, False at padding.
        propagated: (token, layer) K/V entries filled from a frozen residual so far.
        sparsity: the layers/heads/neurons switched off when it was filled (later calls must match).
    """

    def __init__(self, dims: ModelDims, batch_size: int, owner: object, sparsity: Sparsity | None = None):
        self.dims = dims
        # Its own copy: the masks that filled it, even if the caller edits theirs in place before the next call.
        self.sparsity = sparsity.frozen() if sparsity is not None else Sparsity()
        self.batch_size = batch_size
        # The writing model's ``cache_token``: a cache is useless to another model. Not id(model),
        # which Python hands to a new model once the old one is freed.
        self.owner = owner
        self.keys: list[Tensor | None] = [None] * dims.n_layers
        self.values: list[Tensor | None] = [None] * dims.n_layers
        self.resid: Tensor | None = None
        self.positions: Tensor | None = None
        self.attention_mask: Tensor | None = None
        self.propagated = 0

    def __len__(self) -> int:
        return 0 if self.resid is None else self.resid.shape[1]

    def layer_length(self, layer: int) -> int:
        """How many tokens have keys/values at ``layer`` (in [0, n_layers)) already."""
        return self._length_at(check_int("layer", layer, low=0, high=self.dims.n_layers - 1))  # -1 would read the last

    def _length_at(self, layer: int) -> int:
        # Unchecked: the forward's per-layer catch_up and the per-call snapshot pass indices they own.
        k = self.keys[layer]
        return 0 if k is None else k.shape[2]

    def catch_up(self, arch: Architecture, layer: int) -> None:
        """Fill ``layer`` for tokens that exited below it, from their frozen residuals."""
        start, end = self._length_at(layer), len(self)
        if start == end:
            return
        pos_info = arch.position_info(self.positions[:, start:end])
        # under the sparsity that filled the cache: the same kept groups and the same input sparsity
        k, v = arch.attn_kv(layer, self.resid[:, start:end], pos_info, project=self.sparsity.projector(layer, "W_QKV"),
                            groups=self.sparsity.kept_groups(layer, self.dims.n_kv_heads))  # [B, K', n, D]
        self._append(layer, k, v)
        self.propagated += (end - start) * self.batch_size

    def fork(self) -> KVCache:
        """A cache holding the same entries (no copy) that later calls extend without changing this one."""
        twin = copy.copy(self)
        twin.keys, twin.values = list(self.keys), list(self.values)  # appends replace list items, never a tensor
        return twin

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this call's keys/values at ``layer``; return all of them [B, K, T_past + T, D]."""
        self._append(layer, k, v)
        return self.keys[layer], self.values[layer]

    def _append(self, layer: int, k: Tensor, v: Tensor) -> None:
        old_k, old_v = self.keys[layer], self.values[layer]
        self.keys[layer] = k if old_k is None else torch.cat([old_k, k], dim=2)  # along T
        self.values[layer] = v if old_v is None else torch.cat([old_v, v], dim=2)

    def add_tokens(self, resid: Tensor, positions: Tensor, attention_mask: Tensor) -> None:
        """Record this call's tokens once the layer loop is done."""
        def cat(old, new):
            return new if old is None else torch.cat([old, new], dim=1)

        self.resid = cat(self.resid, resid)
        self.positions = cat(self.positions, positions)
        self.attention_mask = cat(self.attention_mask, attention_mask)

    def truncate(self, length: int) -> None:
        """Forget every token from position ``length`` on, at every layer (a rejected draft's entries).

        Afterwards the cache is exactly what it was when it held ``length`` tokens, so the next call
        continues from there. Keys and values become views of the kept prefix (no copy); layers that
        lagged behind keep their shorter length, so lazily propagated entries are still filled on
        demand. ``length`` must be in [0, len(self)]; nothing is clamped.
        """
        length = check_int("length", length, low=0, high=len(self))
        self._restore(([min(self._length_at(l), length) for l in range(self.dims.n_layers)], length,
                       self.propagated))

    def _snapshot(self) -> tuple[list[int], int, int]:
        """What :meth:`_restore` needs to undo a forward call that did not finish."""
        return [self._length_at(l) for l in range(self.dims.n_layers)], len(self), self.propagated

    def _restore(self, snapshot: tuple[list[int], int, int]) -> None:
        layer_lengths, n_tokens, self.propagated = snapshot
        for l, n in enumerate(layer_lengths):
            keep = n > 0 and self.keys[l] is not None
            self.keys[l] = self.keys[l][:, :, :n] if keep else None  # [B, K, n, D]
            self.values[l] = self.values[l][:, :, :n] if keep else None
        if n_tokens == 0:
            self.resid = self.positions = self.attention_mask = None
        elif self.resid is not None:
            self.resid = self.resid[:, :n_tokens]  # [B, n, d_model]
            self.positions = self.positions[:, :n_tokens]  # [B, n]
            self.attention_mask = self.attention_mask[:, :n_tokens]

    def nbytes(self) -> int:
        """Memory held by keys, values and the frozen residuals, in bytes (the benchmark reports it)."""
        tensors = [t for t in self.keys + self.values if t is not None]
        if self.resid is not None:
            tensors.append(self.resid)
        return sum(t.numel() * t.element_size() for t in tensors)
