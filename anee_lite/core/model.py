"""The unrolled forward pass: one loop over the decoder blocks, written once for every architecture.

Reading order: masks and positions, attention, one block, then :class:`UnrolledModel.forward`,
which runs the blocks one by one and lets each token stop after its own number of layers.
"""

from __future__ import annotations

import functools
import types
import uuid
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .architectures import Architecture, ModelDims, from_hf
from .attention import attention, attention_mask_4d, position_ids
from .cache import KVCache, check_kv_fill
from .controller import Controller, as_controller
from .hooks import LayerHooks, check_hooks, run_hook
from .masks import LINEAR_INPUTS, ActivationThresholds, Sparsity, check_sparsity, mask_heads
from .validation import (
    check_controller_stop,
    check_flags,
    check_forward_inputs,
    check_hf_model,
    check_pattern_size,
    claim_controller,
)


class _Dict:
    """Seed-style ``out["logits"]`` access on top of attribute access."""

    def __getitem__(self, key: str):
        if not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class ForwardStats(_Dict):
    """What the forward did. ``layers_executed`` is the deepest any token went."""

    layers_executed: int
    total_layers: int
    exited_early: bool
    exit_layers: Tensor  # [B, T] layers each token ran
    kv_propagated: int  # (token, layer) K/V entries computed from a frozen, exited residual
    kv_caught_up: int = 0  # (token, layer) blocks run in full past a token's exit (kv_fill="catch_up")


@dataclass
class ForwardOutput(_Dict):
    """Logits, stats, the cache (when ``use_cache``) and the activations asked for."""

    logits: Tensor  # [B, T or logits_to_keep, d_vocab]
    stats: ForwardStats
    past_key_values: KVCache | None = None
    activations: dict[str, Tensor] = field(default_factory=dict)

    def resid_stack(self) -> Tensor:
        """[n_layers_run + 1, B, T, d_model]: the residual stream before layer 0 and after each layer."""
        acts = self.activations
        if "blocks.0.hook_resid_pre" not in acts:
            raise ValueError("run the forward with return_resid=True to get the residual stream")
        n = self.stats.layers_executed
        return torch.stack([acts["blocks.0.hook_resid_pre"]] + [acts[f"blocks.{l}.hook_resid_post"] for l in range(n)])


@dataclass
class ForwardCall:
    """What every block of one forward call shares: built once per call, read by :meth:`UnrolledModel.block`."""

    pos_info: object  # what arch.position_info returned for this call's tokens (e.g. RoPE's cos/sin)
    mask: Tensor | None  # [B, 1, T, T_k] bool (True = may attend), or None: plain causal or no mask
    causal: bool  # with no mask: whether to apply the causal mask (False when one new token meets a cache)
    cache: KVCache | None  # keys/values of earlier calls; each block appends this call's
    active: Tensor  # [B, T] bool: tokens that still run the current layer (the others keep their residual)
    all_active: bool = True  # every entry of ``active`` is True: blocks need not freeze anyone
    record_resid: bool = False  # store blocks.{l}.hook_resid_pre/mid/post in activations
    record_patterns: bool = False  # store blocks.{l}.attn.hook_pattern in activations
    sparsity: Sparsity = field(default_factory=Sparsity)  # layers/heads/neurons/activations switched off
    record_mlp_hidden: bool = False  # store blocks.{l}.mlp.hook_post (after mlp_mask) in activations
    record_linear_inputs: bool = False  # store the input of each of the four matrices (calibrating activation sparsity)
    activations: dict[str, Tensor] = field(default_factory=dict)
    hooks: dict[int, LayerHooks] | None = None  # layer -> {hook point: fn}: the caller's interventions


def _all_or_nothing(forward):
    """A forward that does not finish (an error, Ctrl-C in a controller) leaves the cache it was given as it was.

    The cache records its per-layer lengths before the call and cuts back to them on failure: no
    copy on the normal path. The controller is claimed for the call, so two threads cannot mix
    their per-call state in one controller.
    """
    @functools.wraps(forward)
    def run(self, *args, **kwargs):
        cache = kwargs.get("past_key_values")
        snapshot = cache._snapshot() if isinstance(cache, KVCache) else None
        try:
            with claim_controller(kwargs.get("controller")):
                return forward(self, *args, **kwargs)
        except BaseException:
            if snapshot is not None:
                cache._restore(snapshot)
            raise

    return run


class UnrolledModel:
    """A decoder-only LM run block by block in plain PyTorch, on a HuggingFace model's weights.

    Args:
        hf_model: a ``GPT2LMHeadModel`` or ``LlamaForCausalLM``.
        share_weights: False (default): the weights are copied into the fast [in, out] layout and
            ``hf_model`` is left exactly as it was (its parameters, storage, ``requires_grad``, and
            ``save_pretrained``; changing it later does not change this model). True: no copy, for
            tight memory: ``hf_model``'s linear weights are replaced by views of the library's
            [in, out] matrices (same values and ``requires_grad``; HF outputs unchanged), so the two
            share memory. Those views are not contiguous, which safetensors cannot write, so its
            ``save_pretrained`` is given one that writes contiguous copies (same files as before the
            sharing); ``hf_model.half()`` or ``.to()`` afterwards un-shares them.
        device: where the copied weights live (default: the model's device; with
            ``share_weights=True`` it must be the model's device).
    """

    def __init__(self, hf_model, *, share_weights: bool = False, device=None):
        if not isinstance(share_weights, bool):
            raise TypeError(f"share_weights must be True or False, got {share_weights!r}")
        check_hf_model("hf_model", hf_model)
        self.arch: Architecture = from_hf(hf_model, share_weights=share_weights, device=device)
        if share_weights:  # HF's own save_pretrained would fail on the transposed views ("view size...")
            hf_model.save_pretrained = types.MethodType(_save_contiguous, hf_model)
        self.dims: ModelDims = self.arch.dims
        self.device = self.arch.W_U.device
        # Marks the caches this model writes; unlike id(self), never reused by another model.
        self.cache_token = uuid.uuid4().hex

    def logits_from_resid(self, resid: Tensor) -> Tensor:
        """Final norm and unembedding applied to any residual [..., d_model] -> [..., d_vocab]."""
        return self.arch.unembed(self.arch.final_norm(resid))

    @torch.no_grad()
    @_all_or_nothing
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        exit_layers: Tensor | int | None = None,
        controller: Controller | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool | None = None,
        return_resid: bool = False,
        return_patterns: bool = False,
        return_mlp_hidden: bool = False,
        return_linear_inputs: bool = False,
        logits_to_keep: int = 0,
        skip_layers=None,
        head_mask: Tensor | None = None,
        mlp_mask: Tensor | None = None,
        activation_sparsity: float | ActivationThresholds | None = None,
        hooks: dict | None = None,
        kv_fill: str = "propagate",
    ) -> ForwardOutput:
        """Run the blocks in order; token (b, t) runs ``exit_layers[b, t]`` of them.

        Args:
            input_ids: [B, T] token ids (only the new tokens when a cache is passed).
            attention_mask: [B, T_past + T] 1 for real tokens, 0 for (left) padding; None = all real.
                Every row needs a real token, except while a cache is filled chunk by chunk.
            exit_layers: [B, T] or one int: how many layers each token runs, 0..n_layers
                (None = all; 0 = none, the logits come from the embedding alone). Deeper layers
                still get an exited token's keys/values, so tokens that run on can attend to it;
                ``kv_fill`` says how.
            controller: decides exits on the fly before each layer (instead of ``exit_layers``), a
                :class:`~anee_lite.core.controller.Controller` (or a plain function of the same call).
                A token that stops at a check which computed its logits (a lens-based check) takes
                them as its output: unembedded once.
            past_key_values: a cache from an earlier call on the same model and batch; this call
                appends its tokens to it (in place). A call that does not finish (an error, Ctrl-C)
                leaves it exactly as it was.
            use_cache: return a cache for the next call (default: True when ``past_key_values`` is
                given, else False). ``use_cache=False`` with a ``past_key_values`` is refused: the
                given cache would still grow.
            return_resid: store ``blocks.{l}.hook_resid_pre/mid/post`` in ``activations``.
            return_patterns: store ``blocks.{l}.attn.hook_pattern`` [B, H, T, T_k] (slower attention).
            return_mlp_hidden: store ``blocks.{l}.mlp.hook_post`` [B, T, d_mlp], the MLP hidden
                activation that enters the down projection (after ``mlp_mask``; activation sparsity
                acts inside the product, so these are the activations before it).
            return_linear_inputs: store what enters each of a block's four matrices (see
                :data:`~anee_lite.core.masks.LINEAR_INPUTS`): ``blocks.{l}.ln1.hook_normalized``
                [B, T, d_model], ``blocks.{l}.attn.hook_z`` [B, T, H' * D] (the kept groups' heads, after
                ``head_mask``), ``blocks.{l}.ln2.hook_normalized`` and ``blocks.{l}.mlp.hook_post``.
            logits_to_keep: unembed only the last this-many positions (0 = all), as HF does.
            skip_layers: layer indices that run as the identity for every token; unlike an exit,
                later layers still run. A skipped layer computes and caches nothing.
            head_mask: [n_layers, n_heads] float or bool; each query head's output is multiplied by
                its entry before the output projection (1 keeps, 0 removes; the bias is unaffected).
            mlp_mask: [n_layers, d_mlp] float or bool; multiplies each MLP hidden activation before
                the down projection.
            activation_sparsity: per token, zero the smallest-magnitude entries of the input of every
                matrix of a block (TEAL: the normed residual before W_QKV and W_mlp_in, the heads'
                output before W_O, the MLP hidden activations before W_out): a fraction in [0, 1)
                zeroes exactly that share of each input (a per-token sort, the oracle), or
                :class:`~anee_lite.core.masks.ActivationThresholds` keep ``|x| >= threshold[layer, matrix]``
                (calibrated, cheap). For a single decoding token on the CPU each product then reads
                only the weight rows of the kept entries (from the sparsity where that was measured to pay, per matrix: ``ROW_SKIP_MIN_SPARSITY``).
                A whole key/value group whose query heads ``head_mask`` all removes is not computed:
                no queries, keys or values, and no cache entries.
                A cache only continues under the same sparsity knobs that filled it.
            hooks: ``{name: fn}`` to read or replace activations (:mod:`anee_lite.core.hooks`: the names,
                TransformerLens's shapes, e.g. ``blocks.3.attn.hook_z`` [B, T, n_heads, d_head]);
                ``fn(tensor, name)`` returns the replacement or None to keep it. With a cache, the keys
                and values a hooked layer computes are cached as computed.
            kv_fill: how an exited token's keys/values above its exit are filled
                (:mod:`anee_lite.core.cache`). ``"propagate"`` (CALM): from its frozen residual,
                through each deeper layer's K/V projections only. ``"catch_up"`` (FREE): its skipped
                layers run in full later, beside the next tokens that run them, so every key and
                value is the full model's and only the exited tokens' own outputs differ from it;
                no FLOPs are saved, only weight reads. A cache continues under the ``kv_fill`` that
                made it. ``"catch_up"`` does not take ``hooks`` or ``return_*`` recordings (its
                blocks also run earlier tokens).
        """
        controller = as_controller(controller)
        input_ids, key_mask, exit_layers, use_cache = check_forward_inputs(
            self, input_ids, attention_mask, exit_layers, past_key_values, controller, logits_to_keep, use_cache)
        check_flags(return_resid=return_resid, return_patterns=return_patterns,
                    return_mlp_hidden=return_mlp_hidden, return_linear_inputs=return_linear_inputs)
        sparsity = check_sparsity(self.dims, skip_layers, head_mask, mlp_mask, activation_sparsity)
        catching_up = _check_catch_up(check_kv_fill(kv_fill), hooks, return_resid, return_patterns,
                                      return_mlp_hidden, return_linear_inputs)
        cache = self._cache_for_call(past_key_values, sparsity, use_cache, input_ids.shape[0], kv_fill)
        n_past = 0 if cache is None else len(cache)
        if return_patterns:
            check_pattern_size(self.dims, *input_ids.shape, n_past + input_ids.shape[1])
        propagated_before, caught_up_before = (cache.propagated, cache.caught_up) if cache is not None else (0, 0)
        positions = position_ids(key_mask)[:, n_past:]  # [B, T]
        call = ForwardCall(
            pos_info=self.arch.position_info(positions),  # e.g. RoPE's cos/sin, once for all layers
            mask=_attention_mask(key_mask, n_past, input_ids.shape[1]),
            causal=n_past == 0,
            cache=cache,
            active=torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device),
            record_resid=return_resid,
            record_patterns=return_patterns,
            sparsity=sparsity,
            record_mlp_hidden=return_mlp_hidden,
            record_linear_inputs=return_linear_inputs,
            hooks=check_hooks(self.dims, hooks),
        )
        resid = self.arch.embed(input_ids, positions)  # [B, T] -> [B, T, d_model]
        if controller is not None:
            controller.reset(positions)  # a stateful controller starts each call afresh
        deciding = controller is not None and not getattr(controller, "stops_nobody", False)
        may_stop_at = getattr(controller, "may_stop_at", None) or (lambda layer: True)
        kept_from = input_ids.shape[1] - logits_to_keep if logits_to_keep else 0  # first position returned
        reused = _ReusedLogits()
        deepest = 0
        # Below the shallowest exit asked for, every token runs unless a controller stops one: the per-layer
        # comparisons (a few operator calls each, which a decoding step pays) wait until then.
        everyone_runs_below = int(exit_layers.min())
        changed = False  # whether a controller stopped someone since call.active was computed
        running = call.active  # [B, T] tokens that have not exited; under catch_up they still run every block
        # catch_up: each exited token's residual at its exit (its output), while the token itself runs on.
        at_exit = _ExitResiduals() if catching_up else None
        joint_calls: dict[int, ForwardCall] = {}  # catch_up: first lagging token -> the call that runs them too
        for layer in range(self.dims.n_layers):
            if layer in sparsity.skip_layers:  # the identity: no exit decision, no K/V, no cost
                resid = self._skipped_layer(layer, resid, call, exit_layers > layer)
                continue
            if deciding and layer > 0:
                stop = check_controller_stop(controller(layer, resid, running), running, layer)  # [B, T]
                # Most decisions stop nobody, and then nothing changes (a decoding step pays per operator call);
                # a controller that says it cannot stop anyone before this layer is not even read.
                if may_stop_at(layer) and bool(stop.any()):
                    stop = stop & running  # True for a token that already stopped means nothing
                    if bool(stop.any()):
                        exit_layers = torch.where(stop, torch.full_like(exit_layers, layer), exit_layers)
                        reused.take(controller, stop[:, kept_from:])
                        changed = True
            if changed or layer >= everyone_runs_below:
                running = exit_layers > layer  # [B, T]
                all_running = bool(running.all())
                if not all_running and not bool(running.any()):
                    break
                if at_exit is not None:
                    at_exit.record(resid, running)
                else:
                    call.active, call.all_active = running, all_running
                changed = False
            deepest = layer + 1
            if at_exit is not None and cache is not None:
                resid = self._block_beside_lagging(layer, resid, call, cache, positions, key_mask, joint_calls)
                continue
            if cache is not None:
                cache.propagate(self.arch, layer)  # tokens that exited below this layer before this call
            resid = self.block(layer, resid, call)
        beyond_exit = _propagated_in_call(self.dims.n_layers, sparsity.skip_layers, deepest, exit_layers)
        kv_in_call, caught_up_in_call = (0, beyond_exit) if catching_up else (beyond_exit, 0)
        if cache is not None:
            cache.add_tokens(resid, positions, key_mask[:, n_past:])
            cache.propagated += kv_in_call
            cache.caught_up += caught_up_in_call
        stats = ForwardStats(
            layers_executed=deepest,
            total_layers=self.dims.n_layers,
            exited_early=deepest < self.dims.n_layers,
            exit_layers=exit_layers,
            kv_propagated=cache.propagated - propagated_before if cache is not None else kv_in_call,
            kv_caught_up=cache.caught_up - caught_up_before if cache is not None else caught_up_in_call,
        )
        if at_exit is not None:
            resid = at_exit.outputs(resid)  # [B, T, d_model]: each token's residual where it exited
        logits = reused.complete(self, controller, resid[:, kept_from:], exit_layers[:, kept_from:])
        return ForwardOutput(logits=logits, stats=stats, past_key_values=cache if use_cache else None,
                             activations=call.activations)

    def _cache_for_call(self, past_key_values: KVCache | None, sparsity: Sparsity, use_cache: bool,
                        batch: int, kv_fill: str) -> KVCache | None:
        """The cache this call appends to: the one given (filled under the same knobs), a new one, or none."""
        if past_key_values is not None:
            if not past_key_values.sparsity.matches(sparsity):
                raise ValueError("past_key_values was filled under other skip_layers/head_mask/mlp_mask/"
                                 "activation_sparsity: its keys and values do not fit these; start a new cache")
            if past_key_values.kv_fill != kv_fill:
                raise ValueError(f"past_key_values was filled with kv_fill={past_key_values.kv_fill!r}, this call "
                                 f"asks for kv_fill={kv_fill!r}: pass the same kv_fill or start a new cache")
            return past_key_values
        return KVCache(self.dims, batch, self.cache_token, sparsity, kv_fill) if use_cache else None

    def _block_beside_lagging(self, layer: int, resid: Tensor, call: ForwardCall, cache: KVCache, positions: Tensor,
                              key_mask: Tensor, joint_calls: dict[int, ForwardCall]) -> Tensor:
        """``catch_up``: block ``layer`` for this call's tokens and, in the same products, the earlier tokens that lack it.

        The lagging tokens come first in the batch (they are earlier in the text), so one causal mask
        over [lagging, new] gives every query exactly the keys the full model would show it.
        """
        start, lagging = cache.lagging_at(layer)  # [B, n, d_model] or None
        if lagging is None:
            return self.block(layer, resid, call)
        n = lagging.shape[1]
        if start not in joint_calls:  # the same tokens lag at consecutive layers: build their call once
            n_past = len(cache)
            joint_positions = torch.cat([cache.positions[:, start:], positions], dim=1)  # [B, n + T]
            joint_calls[start] = ForwardCall(
                pos_info=self.arch.position_info(joint_positions),
                mask=_attention_mask(key_mask, start, n_past - start + positions.shape[1]),
                causal=start == 0,
                cache=cache,
                active=torch.ones(joint_positions.shape, dtype=torch.bool, device=resid.device),
                sparsity=call.sparsity,
            )
        out = self.block(layer, torch.cat([lagging, resid], dim=1), joint_calls[start])  # [B, n + T, d_model]
        cache.advance_lagging(out[:, :n])
        return out[:, n:]  # [B, T, d_model]

    def _skipped_layer(self, layer: int, resid: Tensor, call: ForwardCall, running: Tensor) -> Tensor:
        """A skipped layer is the identity; its residual hooks still run and its residuals are still recorded."""
        if call.hooks and layer in call.hooks:
            for point in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post"):
                resid = _hook_running(call.hooks[layer], layer, point, resid, running)
        if call.record_resid:
            for point in ("pre", "mid", "post"):
                call.activations[f"blocks.{layer}.hook_resid_{point}"] = resid
        return resid

    __call__ = forward

    def forward_with_grad(self, *args, **kwargs) -> ForwardOutput:
        """:meth:`forward` with autograd on, so gradients reach float masks (head importance, Michel et al.)."""
        return UnrolledModel.forward.__wrapped__(self, *args, **kwargs)

    def readout_logits(self, controller: Controller | None, resid: Tensor, exit_layers: Tensor) -> Tensor:
        """[B, T, d_model] final residuals -> [B, T, d_vocab] output logits (through the controller's readout)."""
        if controller is not None:
            resid = controller.readout(resid, exit_layers)  # e.g. a tuned lens's translator
        return self.logits_from_resid(resid)

    def block(self, layer: int, resid_pre: Tensor, call: ForwardCall) -> Tensor:
        """One pre-norm decoder block [B, T, d_model] -> [B, T, d_model], masks applied; inactive tokens keep their residual."""
        arch, sparsity = self.arch, call.sparsity
        hooks = call.hooks.get(layer) if call.hooks else None  # {hook point: fn} or None: nothing to call
        if hooks:
            resid_pre = _hook_running(hooks, layer, "hook_resid_pre", resid_pre, call.active)
        groups = sparsity.kept_groups(layer, self.dims.n_kv_heads)  # None: every key/value group runs
        project = self._projectors(layer, call)
        q, k, v = arch.attn_qkv(layer, resid_pre, call.pos_info, project=project[0], groups=groups)  # [B, H', T, D], [B, K', T, D] x 2
        if call.cache is not None:
            k, v = call.cache.extend(layer, k, v)  # -> [B, K', T_past + T, D]
        z, pattern = self._attention(q, k, v, call, groups, hooks, layer)  # [B, T, H' * D], [B, H, T, T_k] or None
        if sparsity.head_mask is not None and groups != []:
            z = mask_heads(z, self._kept_heads(sparsity.head_mask[layer], groups))  # masked heads' slices zero
        if hooks and "attn.hook_z" in hooks:
            z = self._hook_heads(z, groups, lambda full: run_hook(hooks, layer, "attn.hook_z", full))
        if call.record_linear_inputs:
            call.activations[f"blocks.{layer}.attn.hook_z"] = z
        resid_mid = resid_pre + arch.attn_out(layer, z, project=project[1], groups=groups)  # [B, T, d_model]
        if hooks:
            resid_mid = run_hook(hooks, layer, "hook_resid_mid", resid_mid)
        hidden = arch.mlp_hidden(layer, resid_mid, project=project[2])  # [B, T, d_mlp]
        if sparsity.mlp_mask is not None:
            hidden = hidden * sparsity.mlp_mask[layer].to(hidden.device, hidden.dtype)  # [B, T, d_mlp] * [d_mlp]
        if hooks:
            hidden = run_hook(hooks, layer, "mlp.hook_post", hidden)
        if call.record_mlp_hidden or call.record_linear_inputs:
            call.activations[f"blocks.{layer}.mlp.hook_post"] = hidden
        resid_post = resid_mid + arch.mlp_out(layer, hidden, project=project[3])  # [B, T, d_model]
        if not call.all_active:
            resid_post = torch.where(call.active[..., None], resid_post, resid_pre)  # exited tokens stay frozen
        if hooks:
            resid_post = _hook_running(hooks, layer, "hook_resid_post", resid_post, call.active)
        if call.record_resid:
            call.activations.update({f"blocks.{layer}.hook_resid_pre": resid_pre,
                                     f"blocks.{layer}.hook_resid_mid": resid_mid,
                                     f"blocks.{layer}.hook_resid_post": resid_post})
        if call.record_patterns:
            call.activations[f"blocks.{layer}.attn.hook_pattern"] = pattern
        return resid_post

    def _projectors(self, layer: int, call: ForwardCall) -> list:
        """The four matrix products of a block (``LINEAR_INPUTS`` order), with this call's activation sparsity.

        With ``return_linear_inputs`` the two normed inputs are recorded as they enter their matrices.
        """
        if call.sparsity.activation is None and not call.record_linear_inputs:
            return _PLAIN_PRODUCTS  # the hot path of plain decoding: nothing to build per layer
        project = [call.sparsity.projector(layer, matrix) for matrix in LINEAR_INPUTS]
        if call.record_linear_inputs:
            for i, hook in ((0, "ln1.hook_normalized"), (2, "ln2.hook_normalized")):
                project[i] = _recording(project[i], call.activations, f"blocks.{layer}.{hook}")
        return project

    def _attention(self, q: Tensor, k: Tensor, v: Tensor, call: ForwardCall, groups: list[int] | None,
                   hooks: LayerHooks | None, layer: int):
        """Attention over the kept groups' heads; the pattern (when asked for) is [B, n_heads, T, T_k], zero for heads never computed."""
        edit = None
        if hooks and "attn.hook_pattern" in hooks:
            def edit(pattern):  # [B, H', T, T_k] -> the hook sees and returns all n_heads
                return self._hook_heads(pattern.transpose(1, 2), groups, lambda full: run_hook(
                    hooks, layer, "attn.hook_pattern", full.transpose(1, 2)).transpose(1, 2)).transpose(1, 2)
        if groups is None or groups:
            z, pattern = attention(q, k, v, call.mask, call.causal, call.record_patterns, edit)  # [B, T, H' * D]
        else:  # every head of the layer is off: nothing to attend with
            z, pattern = q.new_zeros(q.shape[0], q.shape[2], 0), None  # [B, T, 0]
        if call.record_patterns and groups is not None:
            B, T, T_k, dims = q.shape[0], q.shape[2], k.shape[2], self.dims
            full = q.new_zeros(B, dims.n_kv_heads, dims.n_heads // dims.n_kv_heads, T, T_k)  # [B, K, H / K, T, T_k]
            if groups:
                full[:, groups] = pattern.view(B, len(groups), -1, T, T_k)
            pattern = full.view(B, dims.n_heads, T, T_k)
        return z, pattern

    def _hook_heads(self, per_head: Tensor, groups: list[int] | None, hook) -> Tensor:
        """Run ``hook`` on [B, T, n_heads, ...] built from the computed heads' [B, T, H' * ...] (or [B, T, H', ...]).

        Heads of groups never computed enter as zeros and what the hook returns for them is dropped.
        """
        B, T, dims = per_head.shape[0], per_head.shape[1], self.dims
        heads = per_head.reshape(B, T, -1, *([dims.d_head] if per_head.dim() == 3 else per_head.shape[3:]))
        if groups is None:
            return hook(heads).reshape(per_head.shape)  # [B, T, H, ...]
        group = dims.n_heads // dims.n_kv_heads
        full = heads.new_zeros(B, T, dims.n_kv_heads, group, *heads.shape[3:])  # [B, T, K, H / K, ...]
        full[:, :, groups] = heads.reshape(B, T, len(groups), group, *heads.shape[3:])
        out = hook(full.reshape(B, T, dims.n_heads, *heads.shape[3:]))  # [B, T, H, ...]
        return out.reshape(full.shape)[:, :, groups].reshape(per_head.shape)  # only the computed heads go on

    def _kept_heads(self, head_mask: Tensor, groups: list[int] | None) -> Tensor:
        """[n_heads] -> the mask entries of the heads that were computed (those of the kept groups)."""
        if groups is None:
            return head_mask
        return head_mask.view(self.dims.n_kv_heads, -1)[groups].reshape(-1)  # [K, H / K] -> [H']


_PLAIN_PRODUCTS = (None,) * len(LINEAR_INPUTS)  # None: each per-layer function's own dense product


def _attention_mask(key_mask: Tensor, n_past: int, n_new: int) -> Tensor | None:
    """[B, 1, T, T_k] when padding or a multi-token continuation needs one; None: plain causal (or none)."""
    if not bool(key_mask.all()) or (n_past and n_new > 1):
        return attention_mask_4d(key_mask, n_past, n_new)
    return None


def _check_catch_up(kv_fill: str, hooks, *recordings: bool) -> bool:
    """Whether this call catches up (``kv_fill="catch_up"``); hooks and recordings would see the lagging tokens too."""
    if kv_fill != "catch_up":
        return False
    if hooks or any(recordings):
        raise ValueError("kv_fill='catch_up' runs earlier tokens' skipped layers in the same blocks as this call's "
                         "tokens, so it takes no hooks and no return_resid/return_patterns/return_mlp_hidden/"
                         "return_linear_inputs; use kv_fill='propagate' for those")
    return True


class _ExitResiduals:
    """``catch_up``: each token's residual at the layer it exited (its output), kept while it runs on."""

    def __init__(self):
        self.resid: Tensor | None = None  # [B, T, d_model]; rows not in ``taken`` are unset
        self.taken: Tensor | None = None  # [B, T] bool

    def record(self, resid: Tensor, running: Tensor) -> None:
        """Keep ``resid`` [B, T, d_model] (the residual entering this layer) for tokens that stopped and were not kept yet."""
        new = ~running if self.taken is None else ~running & ~self.taken  # [B, T]
        if not bool(new.any()):
            return
        if self.resid is None:
            self.resid, self.taken = resid, new  # no copy: the forward never writes a residual in place
            return
        self.resid = torch.where(new[..., None], resid, self.resid)  # [B, T, d_model]
        self.taken = self.taken | new

    def outputs(self, resid: Tensor) -> Tensor:
        """[B, T, d_model]: the kept residual for exited tokens, ``resid`` for the others."""
        if self.taken is None:
            return resid
        return torch.where(self.taken[..., None], self.resid, resid)


def _propagated_in_call(n_layers: int, skip_layers, deepest: int, exit_layers: Tensor) -> int:
    """K/V entries this call filled for exited tokens (from frozen residuals, or by catching up): layers it ran above each exit."""
    runs = torch.ones(n_layers + 1, dtype=torch.long)  # runs[l] = 1 if layer l runs (index n: padding)
    runs[list(skip_layers)] = 0
    ran_below = torch.cat([torch.zeros(1, dtype=torch.long), runs.cumsum(0)])  # layers run in [0, l)
    return int((ran_below[deepest] - ran_below[exit_layers.clamp(max=deepest).cpu()]).sum())


def _hook_running(hooks: LayerHooks, layer: int, point: str, resid: Tensor, active: Tensor) -> Tensor:
    """A residual [B, T, d_model] through its hook, for the tokens that run ``layer`` (``active`` [B, T]) only.

    An exited token's residual stays frozen whatever the hook returns, so its output, and the keys and values
    later layers derive from it (now or, via the cache, in a later call), are those of its own exit.
    """
    hooked = run_hook(hooks, layer, point, resid)
    if hooked is resid or bool(active.all()):
        return hooked
    return torch.where(active[..., None], hooked, resid)  # [B, T, d_model]


def _recording(project, activations: dict, name: str):
    """``project`` that also stores its input under ``name``."""
    def run(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        activations[name] = x
        return project(x, w, b)

    return run


class _ReusedLogits:
    """Output logits a controller's checks already computed, for the tokens that stopped at them."""

    def __init__(self):
        self.logits: Tensor | None = None  # [B, T', d_vocab]; rows not in ``taken`` are unset
        self.taken: Tensor | None = None  # [B, T'] bool

    def take(self, controller: Controller, stop: Tensor) -> None:
        """Keep the check's logits of the tokens in ``stop`` [B, T'] (they are those tokens' output)."""
        if not bool(stop.any()):
            return
        check = controller.exit_logits()  # [B, T, d_vocab] or None
        if check is None:
            return
        check = check[:, -stop.shape[1]:]  # [B, T', d_vocab]
        if self.logits is None:
            self.logits = check.new_empty(check.shape)
            self.taken = torch.zeros_like(stop)
        self.logits[stop] = check[stop]
        self.taken |= stop

    def complete(self, model: UnrolledModel, controller: Controller | None, resid: Tensor,
                 exit_layers: Tensor) -> Tensor:
        """[B, T', d_model] final residuals -> [B, T', d_vocab]: unembed only the tokens not taken."""
        if self.logits is None:
            return model.readout_logits(controller, resid, exit_layers)
        rest = ~self.taken  # [B, T']
        if bool(rest.any()):
            self.logits[rest] = model.readout_logits(controller, resid[rest][None], exit_layers[rest][None])[0]
        return self.logits


def _save_contiguous(hf_model, save_directory, *args, state_dict=None, **kwargs):
    """HF's ``save_pretrained`` for a model whose weights the library shares: contiguous copies are written.

    One copy per shared view, so tied weights (the embedding and the unembedding) stay one tensor and are
    saved once, as HF saves them from an unshared model.
    """
    state = hf_model.state_dict() if state_dict is None else state_dict
    copies: dict[tuple, Tensor] = {}

    def contiguous(t):
        if not isinstance(t, Tensor) or t.is_contiguous():
            return t
        view = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())  # state_dict detaches: ids differ
        if view not in copies:
            copies[view] = t.contiguous()
        return copies[view]

    return type(hf_model).save_pretrained(hf_model, save_directory, *args,
                                          state_dict={k: contiguous(v) for k, v in state.items()}, **kwargs)


def check_unrolled(model, name: str = "model") -> UnrolledModel:
    """``model`` must be an :class:`UnrolledModel`; a wrapper or a HuggingFace model gets a hint."""
    if not isinstance(model, UnrolledModel):
        hint = " (pass wrapper.model)" if isinstance(getattr(model, "model", None), UnrolledModel) else ""
        raise TypeError(f"{name} must be an anee_lite.UnrolledModel, e.g. UnrolledModel(hf_model), "
                        f"got {type(model).__name__}{hint}")
    return model
