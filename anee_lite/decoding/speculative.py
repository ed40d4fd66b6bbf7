"""Self-speculative greedy decoding: the first L layers draft, all layers verify, nothing changes.

Early exit changes the text because a shallow layer's guess is sometimes wrong. Speculative
decoding (Leviathan et al., 2023) keeps the guess only where the full model agrees. Here the
draft model is the model's own first ``L`` layers read out through a lens (as in LayerSkip and
Draft & Verify), so one KV cache serves both:

1. **draft**: the last token and then each drafted token run layers 0..L-1, one at a time; a lens
   on the layer-L residual proposes the next token. ``K`` tokens are proposed.
2. **verify**: the K+1 layer-L residuals (the last token and the K drafts) run layers L..n-1 in
   ONE forward. Layers below L are not run again: the draft already computed them, with the
   full model's own weights, so their keys and values in the cache are exactly the full model's.
3. **accept**: keep the longest prefix of drafts that equal the full model's argmax, then the full
   model's own next token (the "bonus"); roll the cache back over the rejected drafts.

Every emitted token is the full model's argmax given the tokens before it, so the output is the
full-depth greedy output. Only the time changes: a round costs K shallow steps plus one deep pass
over K+1 tokens and emits between 1 and K+1 tokens.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..core.attention import attention_mask_4d
from ..core.cache import KVCache
from ..core.model import ForwardCall, UnrolledModel
from ..core.validation import check_int, check_reads_this_model
from .result import GenerationResult, SpeculativeStats, StopAtEos


def expected_tokens_per_round(acceptance: float, draft_tokens: int) -> float:
    """Leviathan et al. (2023): E = (1 - a^(K+1)) / (1 - a) tokens per round, K + 1 when a = 1."""
    a, k = float(acceptance), int(draft_tokens)
    if a >= 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


def expected_speedup(acceptance: float, draft_tokens: int, draft_cost: float, verify_cost: float) -> float:
    """Predicted speed-up over plain decoding: E / (K c + v).

    Args:
        acceptance: a, the chance one draft is accepted (given the ones before it were).
        draft_tokens: K, drafts per round.
        draft_cost: c, one draft step's time as a fraction of one full-depth decoding step.
        verify_cost: v, one verify pass's time (K + 1 tokens, layers L..n-1) as that fraction.
    """
    return expected_tokens_per_round(acceptance, draft_tokens) / (draft_tokens * draft_cost + verify_cost)


def accepted_drafts(drafts: Tensor, full: Tensor) -> Tensor:
    """The acceptance rule: how many leading drafts equal the full model's argmax, per row.

    Args:
        drafts: [B, k] drafted ids d_1..d_k.
        full: [B, k + 1] the full model's argmax after the last token and after each draft.

    Returns:
        [B] j: d_1..d_j are kept, and full[:, j] is the full model's own next token after them.
    """
    k = drafts.shape[1]
    return (drafts == full[:, :k]).long().cumprod(dim=1).sum(dim=1)  # [B, k] -> [B]


def check_draft_args(model: UnrolledModel, draft_layers, draft_tokens) -> tuple[int, int]:
    """1 <= draft_layers < n_layers and draft_tokens >= 1, as ints (else TypeError/ValueError)."""
    n = model.dims.n_layers
    if n < 2:
        raise ValueError(f"self-speculative decoding needs a model with at least 2 layers, this one has {n}")
    draft_layers = check_int("draft_layers", draft_layers, low=1, high=n - 1)
    draft_tokens = check_int("draft_tokens", draft_tokens, low=1)
    return draft_layers, draft_tokens


def run_layers(model: UnrolledModel, resid: Tensor, positions: Tensor, key_mask: Tensor, cache: KVCache,
               start: int, stop: int) -> Tensor:
    """Run layers start..stop-1 on new tokens whose residual enters ``start``, appending their K/V.

    Args:
        resid: [B, T, d_model] the new tokens' residual before layer ``start``.
        positions: [B, T] their position ids.
        key_mask: [B, >= T_past + T] bool, the mask of the cached tokens then the new ones.
        cache: holds the same number of tokens T_past at every layer in start..stop-1.
    """
    B, T, _ = resid.shape
    n_past = cache.layer_length(start)
    keys = key_mask[:, :n_past + T]  # [B, T_past + T]
    mask = attention_mask_4d(keys, n_past, T) if T > 1 or not bool(keys.all()) else None  # [B, 1, T, T_k]
    call = ForwardCall(pos_info=model.arch.position_info(positions), mask=mask, causal=False, cache=cache,
                       active=torch.ones(B, T, dtype=torch.bool, device=resid.device))
    for layer in range(start, stop):
        resid = model.block(layer, resid, call)
    return resid  # [B, T, d_model]


def _draft(model, draft_lens, layers, cache, last, positions, key_mask, k, stats):
    """Run ``last`` and k drafts through layers 0..L-1; return the k drafts [B, k] and k+1 residuals."""
    start = time.perf_counter()
    tokens, resids = [last], []
    for i in range(k + 1):
        pos = positions[:, i:i + 1]  # [B, 1]
        h = run_layers(model, model.arch.embed(tokens[-1][:, None], pos), pos, key_mask, cache, 0, layers)
        resids.append(h)  # [B, 1, d_model] residual after layer L
        if i < k:  # the last draft only needs its residual for the verify pass
            logits = draft_lens(h[:, 0])  # [B, d_model] -> [B, d_vocab]
            tokens.append(logits.argmax(dim=-1))  # [B]
    stats.draft_seconds += time.perf_counter() - start
    drafts = torch.stack(tokens[1:], dim=1) if k else last[:, None][:, :0]  # [B, k]
    return drafts, torch.cat(resids, dim=1)  # [B, k], [B, k + 1, d_model]


@torch.no_grad()
def speculative_generate(model: UnrolledModel, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                         max_new_tokens: int, draft_layers: int, draft_tokens: int, draft_lens=None,
                         eos_token_id: int | None = None, pad_token_id: int | None = None):
    """Greedy decoding with self-speculation; the output equals full-depth cached greedy decoding.

    Args:
        model: the unrolled model.
        input_ids: [B, T] prompt ids, left-padded if rows differ in length.
        attention_mask: [B, T] 1 for real tokens, 0 for padding.
        max_new_tokens: upper bound on generated tokens.
        draft_layers: L, layers the draft runs (1 <= L < n_layers).
        draft_tokens: K, tokens drafted per round (>= 1).
        draft_lens: reads the draft's next token off the layer-L residual: None for the logit lens
            (final norm + unembedding), or a lens object with ``logits(layer, resid)`` (a tuned lens).
        eos_token_id: stop a row once it emits this id (later tokens of the row become ``pad_token_id``).
        pad_token_id: filler after EOS; defaults to ``eos_token_id``.

    Returns:
        A :class:`~anee_lite.decoding.GenerationResult` whose ``speculative`` holds the statistics.
    """
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
    L, K = check_draft_args(model, draft_layers, draft_tokens)
    if draft_lens is None:
        def readout(resid):
            return model.logits_from_resid(resid)
    elif hasattr(draft_lens, "logits"):
        check_reads_this_model("draft_lens", draft_lens, model)

        def readout(resid):
            return draft_lens.logits(L, resid)
    else:
        raise TypeError(f"draft_lens must be None (the logit lens) or a lens with logits(layer, resid), "
                        f"got {type(draft_lens).__name__}")
    stats = SpeculativeStats(draft_layers=L, draft_tokens=K)
    result = GenerationResult(sequences=input_ids, prompt_length=input_ids.shape[1], speculative=stats)
    if max_new_tokens == 0:
        return result
    n = model.dims.n_layers
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
    stop = StopAtEos(input_ids.shape[0], eos_token_id, pad_token_id, input_ids.device)

    start = time.perf_counter()
    out = model.forward(input_ids, mask, use_cache=True, logits_to_keep=1)  # prefill at full depth
    cache = out.past_key_values
    last = stop.filter(out.logits[:, -1].argmax(dim=-1))  # [B]
    result.append(last, n, time.perf_counter() - start)
    while not stop.done and len(result.step_times) < max_new_tokens:
        start = time.perf_counter()
        k = min(K, max_new_tokens - len(result.step_times) - 1)  # never draft past max_new_tokens
        n_cached = len(cache)
        positions = cache.positions[:, -1:] + 1 + torch.arange(k + 1, device=mask.device)  # [B, k + 1]
        key_mask = torch.cat([cache.attention_mask, torch.ones_like(positions, dtype=torch.bool)], dim=1)
        drafts, resid_l = _draft(model, readout, L, cache, last, positions, key_mask, k, stats)

        verify_start = time.perf_counter()
        resid = run_layers(model, resid_l, positions, key_mask, cache, L, n)  # [B, k + 1, d_model]
        cache.add_tokens(resid, positions, key_mask[:, n_cached:])
        full = model.logits_from_resid(resid).argmax(dim=-1)  # [B, k + 1, d_vocab] -> [B, k + 1]
        j = int(accepted_drafts(drafts, full)[~stop.finished].min())  # a batch keeps its shortest prefix
        cache.truncate(n_cached + j + 1)  # keep `last` and the accepted drafts; roll back the rest
        stats.rounds += 1
        stats.drafted += k
        stats.accepted += j
        stats.judged += j + (j < k)
        stats.emitted += j + 1
        emitted = torch.cat([drafts[:, :j], full[:, j:j + 1]], dim=1)  # [B, j + 1]
        stats.verify_seconds += time.perf_counter() - verify_start
        seconds = (time.perf_counter() - start) / (j + 1)
        for i in range(j + 1):
            last = stop.filter(emitted[:, i])
            result.append(last, n, seconds)
            if stop.done:
                break
    return result
