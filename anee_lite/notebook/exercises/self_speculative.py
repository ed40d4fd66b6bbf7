"""Checks of notebook 08 (self-speculative decoding): the acceptance rule of one round, the expected number
of tokens a round emits."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...decoding.speculative import accepted_drafts, expected_tokens_per_round
from ._convention import ExerciseError, call, correct, exercise, number


def _accept_cases() -> list[tuple[list[int], list[int]]]:
    """Hand-picked rounds (all accepted, first rejected, middle rejected, no drafts) and 40 random ones."""
    g = torch.Generator().manual_seed(0)
    cases = [([5, 6, 7], [5, 6, 7, 8]), ([5, 6, 7], [9, 6, 7, 8]), ([5, 6, 7], [5, 9, 7, 8]), ([], [4])]
    for _ in range(40):
        k = int(torch.randint(1, 9, (1,), generator=g))
        full = torch.randint(0, 3, (k + 1,), generator=g)  # [k + 1]
        drafts = torch.where(torch.rand(k, generator=g) < 0.7, full[:k], torch.randint(0, 3, (k,), generator=g))
        cases.append((drafts.tolist(), full.tolist()))
    return cases


@exercise("Accept")
def check_accept(fn: Callable | None) -> None:
    """Exercise: ``fn(drafts, full) -> list``, the tokens one round emits, against the library's rule.

    ``drafts`` is a list of k drafted ids; ``full`` the k + 1 ids the full model predicts after the last
    token and after each draft. The round emits the agreeing prefix of drafts plus the full model's token.
    """
    name = "Accept"
    cases = _accept_cases()
    for drafts, full in cases:
        j = int(accepted_drafts(torch.tensor([drafts], dtype=torch.long).reshape(1, -1), torch.tensor([full]))[0])
        expected = drafts[:j] + [full[j]]
        got = call(name, fn, list(drafts), list(full))
        try:
            emitted = None if isinstance(got, (str, bytes)) else list(got)
        except TypeError:  # not iterable: a number, a 0-d tensor
            emitted = None
        if emitted is None:
            raise ExerciseError(f"{name}: accept({drafts}, {full}) must return a list of token ids, "
                                f"got {type(got).__name__}")
        if emitted == drafts[:j]:
            raise ExerciseError(f"{name}: accept({drafts}, {full}) returns the accepted drafts only; a round also "
                                "emits the full model's own token where the first mismatch is (or after the last "
                                "draft).")
        if emitted != expected:
            raise ExerciseError(f"{name}: accept({drafts}, {full}) returned {got}: keep drafts while they equal the "
                                "full model's token at the same place, then add the full model's own token where "
                                "the first mismatch is (or after the last draft).")
    correct(name, f"All {len(cases)} rounds agree with the library's rule.")


@exercise("Expected tokens")
def check_expected_tokens(fn: Callable | None) -> None:
    """Exercise: ``fn(a, k)``, the expected tokens a round emits, E = (1 - a^(k+1)) / (1 - a)."""
    name = "Expected tokens"
    for a in (0.0, 0.1, 0.35, 0.5, 0.8, 0.99, 1.0):
        for k in (1, 2, 4, 8):
            got = float(number(name, call(name, fn, a, k)))
            want = expected_tokens_per_round(a, k)
            if abs(got - want) > 1e-6 * max(1.0, want):
                hint = (" At a = 1 every draft is accepted: the formula's 0/0 has a limit." if a == 1 else
                        " A round emits the first draft with chance a, the first two with a^2, ... plus one token "
                        "always.")
                raise ExerciseError(f"{name}: wrong for a={a}, k={k}.{hint}")
    correct(name, "E(a, K) matches the library for 28 (a, K) pairs.")
