"""``candidate``: a cheaper exit check, CALM's confidence rule screened on a candidate set, confirmed exactly before exit.

A confidence check needs the lens's top-1 probability, that is, the whole unembedding: on
SmolLM2-135M that is 49,152 x 576 multiply-adds, as much as 8 of its 30 layers. Most checks say
"not yet", so we screen first, on a small *candidate set* S of tokens (``k`` columns of ``W_U``):

    screen:   s = max_i softmax(logits restricted to S)_i     (k x d_model multiply-adds)
    confirm:  if s >= threshold, compute the full lens and exit only if its top-1 probability
              >= threshold (the exact rule; on exit these logits are the token's output)

Restricting a softmax to S removes mass from the denominator, so whenever the full distribution's
top-1 lies in S, ``s`` is at least its top-1 probability: the screen never says "continue" where the
exact rule would exit. (If the top-1 lies outside S it may; the token then just runs on.) Every exit
passes the exact rule, so the controller exits only where :class:`ConfidenceExit` would.

Which tokens? By default the ``k`` lowest token ids: byte-level BPE vocabularies (GPT-2, SmolLM2)
number tokens in merge order, and early merges are the frequent ones, so low ids cover most running
text. A rank-r factor of ``W_U`` does not work as a screen here: we tried it on SmolLM2 and the
unembedding is far from low rank (rank 256 keeps the top-1 among its top-32 for only 11-22% of
tokens). ``candidates_from_counts`` builds S from token counts of a training text instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.validation import check_int
from ...lens import LogitLens
from .base import ExitController, register

DEFAULT_CANDIDATES = 4096  # 78% of the Python-docs calibration text's tokens have a lower id (SmolLM2's BPE)


def candidates_from_counts(token_ids: Tensor, d_vocab: int, k: int) -> Tensor:
    """The ``k`` most frequent ids in ``token_ids`` (a training text), topped up with the lowest ids."""
    k = check_int("k", k, low=1, high=d_vocab)
    counts = torch.bincount(token_ids.flatten(), minlength=d_vocab).float()  # [d_vocab]
    counts -= torch.arange(d_vocab) * 1e-9  # ties (and unseen ids) go to the lower id
    return counts.topk(k).indices.sort().values  # [k]


@register
class CandidateConfidenceExit(ExitController):
    """Confidence exit with a k-token screen and an exact confirmation (see the module docstring).

    Args:
        threshold: top-1 probability to exit at (0..1), as for ``confidence``.
        lens: the lens to read (a logit or tuned lens).
        candidates: [k] token ids of the screen (None: the ``n_candidates`` lowest ids).
        n_candidates: k when ``candidates`` is None (None: 4096, or the whole vocabulary if smaller).

    Charges: every check is one screen (a cheap check of ``k x d_model`` MACs plus the final norm,
    and the lens's translator); a token that stops was confirmed by one full lens evaluation
    whose logits are its output (not unembedded again); ``extra_lens_checks`` [B, T] counts the
    confirmations that did not let the token stop, each one more lens evaluation.
    """

    name = "candidate"
    default_threshold = 0.5

    def __init__(self, threshold: float | None, lens: LogitLens, *, candidates: Tensor | None = None,
                 n_candidates: int | None = None, **kwargs):
        super().__init__(threshold, lens, **kwargs)
        V = lens.model.dims.d_vocab
        if candidates is None:
            k = min(DEFAULT_CANDIDATES, V) if n_candidates is None else check_int("n_candidates", n_candidates,
                                                                                  low=1, high=V)
            candidates = torch.arange(k)
        candidates = torch.as_tensor(candidates).long().unique()
        if candidates.numel() == 0 or int(candidates.min()) < 0 or int(candidates.max()) >= V:
            raise ValueError(f"candidates must be non-empty token ids in [0, {V}), got {candidates.numel()} ids")
        self.candidates = candidates
        self.W_S = lens.model.arch.W_U[:, candidates].contiguous()  # [d_model, d_vocab] -> [d_model, k]

    def clear_state(self) -> None:
        self.extra_lens_checks: Tensor | None = None  # [B, T] confirmations that did not stop the token

    @property
    def probe_macs_per_check(self) -> int:
        d = self.lens.model.dims.d_model
        return self.candidates.numel() * d + 2 * d  # k dot products + the final norm (charged 2 d, as a norm)

    def charges(self, exit_layer: int) -> dict:
        checked = self.checked_layers(exit_layer)
        stopped = exit_layer < self.n_layers  # confirmed by one lens evaluation, reused as its output
        translators = sum(self.lens.translator_macs(l) for l in checked)  # every screen translates
        return {
            "lens_checks": int(stopped),
            "lens_translator_macs": translators + (self.lens.translator_macs(exit_layer) if stopped else 0),
            "probe_checks": len(checked),
            "probe_macs_per_check": self.probe_macs_per_check,
            "readout_translator_macs": 0 if stopped else self.lens.translator_macs(exit_layer),
            "unembed": not stopped,
        }

    def score(self, layer: int, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T] top-1 probability of the softmax restricted to the candidates."""
        normed = self.lens.model.arch.final_norm(self.lens.translate(layer, resid))  # [B, T, d]
        logits = normed @ self.W_S.to(normed.dtype)  # [B, T, d] @ [d, k] -> [B, T, k]
        return logits.float().softmax(-1).max(-1).values

    def __call__(self, layer: int, resid: Tensor, active: Tensor) -> Tensor:
        if self.checks is None:
            self.checks = torch.zeros(active.shape, dtype=torch.long, device=active.device)
        if self.extra_lens_checks is None:
            self.extra_lens_checks = torch.zeros_like(self.checks)
        self._logits = None
        if self.stops_nobody:
            return self.no_stop(active)
        stop = torch.zeros(active.shape, dtype=torch.bool, device=active.device)
        if layer in self.exit_layers_allowed:
            screen = self.score(layer, resid)  # [B, T]
            thr = torch.as_tensor(self.threshold_at(self.threshold, self.positions, screen), dtype=screen.dtype)
            thr = thr.expand(screen.shape)  # [B, T]: a number, per-row thresholds or CALM's decay
            maybe = (screen >= thr) & active & self.past_sink(self.positions, screen)  # [B, T]
            self.checks += active.long()
            if bool(maybe.any()):
                exact = self.lens.logits(layer, resid[maybe])  # [M, d] -> [M, V], the confirmation
                ok = exact.float().softmax(-1).max(-1).values >= thr[maybe]  # [M]
                stop[maybe] = ok
                self._logits = exact.new_zeros(*resid.shape[:2], exact.shape[-1])  # [B, T, V]
                self._logits[maybe] = exact  # the output of the tokens that stop here
                self.extra_lens_checks += (maybe & ~stop).long()  # confirmed but not stopped
        self.observe(layer, resid)
        return stop
