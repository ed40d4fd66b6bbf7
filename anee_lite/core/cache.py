"""A KV cache that stays exact when tokens leave the model early.

A token that exits after layer L never computes keys and values for the layers above L, yet a
later token that runs deeper will attend to it there. We fill those entries the way CALM does
(state propagation): the exited token's frozen residual goes through the deeper layer's input norm
and K/V projections (and RoPE) only. We do it *lazily*: the cache keeps every token's frozen
residual and fills a layer's missing entries the first time some later token runs that layer.
The values are the same as filling them eagerly at exit time, but a static exit (every token
stops at the same layer) never pays for layers nobody reaches.

Propagation is what CALM used; it is not free of error: on SmolLM2-135M most of the agreement early
exit loses is on later tokens that ran every layer and attended to propagated entries
(``benchmarks/bench_propagation.py``).

The alternative, ``kv_fill="catch_up"`` (FREE, Bae et al. 2023), runs an exited token's skipped
layers *in full* later, side by side with the next token that runs them: the lagging tokens and the
new ones go through the layer as one batch, so the layer's weights are read once for all of them.
Every key and value is then the full model's, and only the exited tokens' own outputs can differ
from the full model's. It saves no FLOPs (the skipped layers run after all), only weight reads:
tokens that exit in a row are caught up together when a deeper one comes. On this project's 2-core
CPU an extra row in a product still costs about a third of a row's time (a one-row product is bound
by reading the weights, a few-row one partly by arithmetic), so a caught-up layer is not free.
The cache keeps, instead of frozen residuals, the residual of each lagging token at the depth its
keys and values reach.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from .architectures import Architecture, ModelDims
from .masks import Sparsity
from .validation import check_int

KV_FILLS = ("propagate", "catch_up")  # how keys/values above an exit are filled (see the module docstring)
# Where a controller decides exits, a threshold calibrated for an agreement target keeps its promise on held-out
# text only with the full model's keys and values (on SmolLM2-135M, propagation delivered 0.769 for 0.80 and
# 0.852 for 0.90; catch-up 0.824 and 0.938): so decoding with a controller catches up unless told otherwise.
CONTROLLER_KV_FILL = "catch_up"


def check_kv_fill(kv_fill) -> str:
    """``kv_fill`` must be one of :data:`KV_FILLS`."""
    if not isinstance(kv_fill, str) or kv_fill not in KV_FILLS:
        raise ValueError(f"kv_fill must be one of {list(KV_FILLS)}, got {kv_fill!r}")
    return kv_fill


def resolve_kv_fill(kv_fill, controller) -> str:
    """``kv_fill`` checked, or when None the default: :data:`CONTROLLER_KV_FILL` if a controller decides exits,
    else ``"propagate"`` (static exits leave nothing that a later token runs, so neither fill does anything)."""
    if kv_fill is None:
        return CONTROLLER_KV_FILL if controller is not None else "propagate"
    return check_kv_fill(kv_fill)


def catch_up_rows(depths, first_tokens: int = 1) -> list[tuple[int, ...]]:
    """Under ``catch_up``, per forward call and per layer it runs, the earlier tokens that run that layer beside it.

    A call that runs to depth d catches every earlier token up to d: at layer l < d, the tokens whose
    keys/values stop at or below l (always the last few) go through the block with the call's own.
    What one batch-1 decoding pays per step, read off the depths alone: the cost model and the
    simulator price catch-up from this, and ``KVCache.caught_up`` counts the same blocks.

    Args:
        depths: layers each call ran (``ForwardStats.layers_executed``), in order; call 0 starts from an empty cache.
        first_tokens: tokens call 0 brings (a prompt); every later call brings one. All of a call's tokens run
            to its depth (an exited token runs on inside its own call).

    Returns:
        Per call, a tuple of ``depths[t]`` counts: entry l is the earlier tokens that ran layer l in that call.
    """
    first_tokens = check_int("first_tokens", first_tokens, low=1)
    rows: list[tuple[int, ...]] = []
    # Earlier tokens' depths as a stack of [depth, count], deepest at the bottom: a call raises every token
    # below its depth to it, so the depths never increase towards the newest token.
    stack: list[list[int]] = []
    for t, depth in enumerate(depths):
        depth = check_int(f"depths[{t}]", depth, low=0)
        lagging, caught = [0] * depth, 0
        while stack and stack[-1][0] < depth:  # the newest tokens lag; run them from their depth up
            below, count = stack.pop()
            caught += count
            for layer in range(below, depth):
                lagging[layer] += count
        rows.append(tuple(lagging))
        now_at_depth = caught + (first_tokens if t == 0 else 1)
        if stack and stack[-1][0] == depth:
            stack[-1][1] += now_at_depth
        else:
            stack.append([depth, now_at_depth])
    return rows


class KVCache:
    """Keys and values per layer, plus what fills the entries exited tokens still owe deeper layers.

    Attributes:
        keys, values: per layer, [B, K', T_l, d_head] with K' the key/value groups that run there
            (fewer than n_kv_heads when a head mask removes whole groups); T_l can lag behind
            ``len(self)`` for layers that no token has needed since some tokens exited below them.
        resid: [B, T, d_model] the residual each token left the model with (``propagate``; None
            under ``catch_up``).
        lagging: ``catch_up`` only: [B, n, d_model] the residuals of the last n tokens, each at the
            depth its keys/values reach (the tokens some layer still lacks, maybe a few done ones before them).
        positions: [B, T] position ids used for the rotary embedding of late-filled keys.
        attention_mask: [B, T] bool, False at padding.
        propagated: (token, layer) K/V entries filled from a frozen residual so far.
        caught_up: (token, layer) blocks run in full for tokens past their exit so far (``catch_up``).
        kv_fill: ``"propagate"`` or ``"catch_up"``, fixed when the cache is made (later calls must match).
        sparsity: the layers/heads/neurons switched off when it was filled (later calls must match).
    """

    def __init__(self, dims: ModelDims, batch_size: int, owner: object, sparsity: Sparsity | None = None,
                 kv_fill: str = "propagate"):
        self.dims = dims
        self.kv_fill = check_kv_fill(kv_fill)
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
        self.lagging: Tensor | None = None
        # the layers that run (and so get keys/values): a skipped layer never does
        self._filled_layers = [l for l in range(dims.n_layers) if l not in self.sparsity.skip_layers]
        self.propagated = 0
        self.caught_up = 0

    def __len__(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    def layer_length(self, layer: int) -> int:
        """How many tokens have keys/values at ``layer`` (in [0, n_layers)) already."""
        return self._length_at(check_int("layer", layer, low=0, high=self.dims.n_layers - 1))  # -1 would read the last

    def _length_at(self, layer: int) -> int:
        # Unchecked: the forward's per-layer fills and the per-call snapshot pass indices they own.
        k = self.keys[layer]
        return 0 if k is None else k.shape[2]

    def propagate(self, arch: Architecture, layer: int) -> None:
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

    def lagging_at(self, layer: int) -> tuple[int, Tensor | None]:
        """``catch_up``: (first token without keys/values at ``layer``, the residuals [B, n, d_model] of those n tokens).

        They are the last n tokens and all stand at depth ``layer`` (each earlier layer caught them up
        before this one), so running block ``layer`` on them gives the full model's keys and values.
        """
        start = self._length_at(layer)
        n = len(self) - start
        return start, (self.lagging[:, -n:] if n else None)  # [B, n, d_model]

    def advance_lagging(self, resid_post: Tensor) -> None:
        """``catch_up``: the last n lagging tokens ran one more block; ``resid_post`` [B, n, d_model] is their new residual."""
        n = resid_post.shape[1]
        kept = self.lagging[:, :-n]  # [B, n_lagging - n, d_model]: tokens already past this layer
        self.lagging = torch.cat([kept, resid_post], dim=1) if kept.shape[1] else resid_post  # never in place
        self.caught_up += n * self.batch_size

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
        """Record this call's tokens once the layer loop is done (``resid`` [B, T, d_model] where it ended)."""
        def cat(old, new):
            return new if old is None else torch.cat([old, new], dim=1)

        self.positions = cat(self.positions, positions)
        self.attention_mask = cat(self.attention_mask, attention_mask)
        if self.kv_fill == "propagate":
            self.resid = cat(self.resid, resid)
            return
        # catch_up: keep the residuals of the tokens some layer still lacks; under catch_up all of this
        # call's tokens ran to the same depth, so ``resid`` is where their keys/values stop.
        self.lagging = self._lagging_window(cat(self.lagging, resid), len(self))

    def _lagging_window(self, lagging: Tensor | None, n_tokens: int) -> Tensor | None:
        """The tail of ``lagging`` (the last tokens of ``n_tokens``) that some layer still lacks."""
        n = n_tokens - min((self._length_at(l) for l in self._filled_layers), default=n_tokens)
        return lagging[:, lagging.shape[1] - n:] if n else None  # [B, n, d_model]

    def truncate(self, length: int) -> None:
        """Forget every token from position ``length`` on, at every layer (a rejected draft's entries).

        Afterwards the cache is exactly what it was when it held ``length`` tokens, so the next call
        continues from there. Keys and values become views of the kept prefix (no copy); layers that
        lagged behind keep their shorter length, so lazily propagated entries are still filled on
        demand. ``length`` must be in [0, len(self)]; nothing is clamped.
        """
        length = check_int("length", length, low=0, high=len(self))
        lagging = self.lagging
        if lagging is not None:  # the lagging residuals of the kept tokens (a caught-up token keeps its depth)
            lagging = lagging[:, :max(0, lagging.shape[1] - (len(self) - length))]  # [B, n', d_model]
        self._restore(([min(self._length_at(l), length) for l in range(self.dims.n_layers)], length,
                       self.propagated, self.caught_up, lagging))
        if self.lagging is not None:
            self.lagging = self._lagging_window(self.lagging, length)

    def _snapshot(self) -> tuple:
        """What :meth:`_restore` needs to undo a forward call that did not finish (no copy: nothing is edited in place)."""
        return ([self._length_at(l) for l in range(self.dims.n_layers)], len(self), self.propagated, self.caught_up,
                self.lagging)

    def _restore(self, snapshot: tuple) -> None:
        layer_lengths, n_tokens, self.propagated, self.caught_up, self.lagging = snapshot
        for l, n in enumerate(layer_lengths):
            keep = n > 0 and self.keys[l] is not None
            self.keys[l] = self.keys[l][:, :, :n] if keep else None  # [B, K, n, D]
            self.values[l] = self.values[l][:, :, :n] if keep else None
        if n_tokens == 0:
            self.resid = self.positions = self.attention_mask = self.lagging = None
        elif self.positions is not None:
            if self.resid is not None:
                self.resid = self.resid[:, :n_tokens]  # [B, n, d_model]
            self.positions = self.positions[:, :n_tokens]  # [B, n]
            self.attention_mask = self.attention_mask[:, :n_tokens]

    def nbytes(self) -> int:
        """Memory held by keys, values and the residuals kept to fill deeper layers, in bytes (the benchmark reports it)."""
        tensors = [t for t in self.keys + self.values + [self.resid, self.lagging] if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)
