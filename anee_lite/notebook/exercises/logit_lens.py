"""Checks of notebook 02 (the logit lens): the first stable layer, the top-k readout, KL per layer, a patching hook."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...core.metrics import kl_divergence
from ...interventions import patch, record
from ._convention import ExerciseError, call, close, correct, exercise, number, tensor_like


def _first_stable(ranks: list[int]) -> int:
    not_top = [row for row, r in enumerate(ranks) if r != 1]
    return not_top[-1] + 1 if not_top else 0


def _rank_lists() -> list[list[int]]:
    """Rank lists the notebook never prints: on top early then knocked off, on top from the start, never on top,
    only at the end, and random ones."""
    gen = torch.Generator().manual_seed(12)
    lists = [[900, 3, 1, 2, 1, 1], [1, 1, 1], [7, 4, 2], [50, 9, 3, 1], [1, 5, 1, 1, 1, 1, 1], [2]]
    for _ in range(30):
        n = int(torch.randint(2, 40, (1,), generator=gen))
        ranks = torch.randint(1, 4, (n,), generator=gen)  # [n]: 1 = on top
        ranks[int(torch.randint(0, n, (1,), generator=gen)):] = 1  # stable from a random row ...
        ranks[int(torch.randint(0, n, (1,), generator=gen))] += int(torch.randint(0, 2, (1,), generator=gen))
        lists.append(ranks.tolist())  # ... but sometimes knocked off once more
    return lists


@exercise("First stable layer")
def check_first_stable_layer(fn: Callable | None) -> None:
    """Exercise: ``fn(ranks) -> int``, the first row from which the final token has rank 1 (top) in every later row.

    ``ranks[l]`` is the 1-based rank of the final token after ``l`` layers (row 0 = the embeddings). When it
    is never on top for good, the answer is ``len(ranks)`` (no row qualifies). Tried on rank lists the
    notebook never prints.
    """
    name = "First stable layer"
    lists = _rank_lists()
    for ranks in lists:
        expected = _first_stable(ranks)
        got = number(name, call(name, fn, list(ranks)), whole=True)
        if got == expected:
            continue
        first_top = ranks.index(1) if 1 in ranks else None
        if got == first_top:
            raise ExerciseError(f"{name}: for ranks={ranks} you return the first row where it is on top; it must "
                                "also stay on top in every later row.")
        if 0 <= got < len(ranks) and all(r == 1 for r in ranks[got:]):
            raise ExerciseError(f"{name}: for ranks={ranks} it is on top from row {got} on, but already from an "
                                "earlier row: look earlier.")
        raise ExerciseError(f"{name}: wrong for ranks={ranks} (you return {got!r}); find the last row where it "
                            "is not on top: the answer is the row after it (0 if there is none, len(ranks) if it "
                            "is not on top at the end).")
    correct(name, f"(on {len(lists)} rank lists)")


@exercise("Top-k lens readout")
def check_lens_top_k(fn: Callable | None, model, resid_stack: Tensor, ks=(1, 5, 12)) -> None:
    """Exercise: ``fn(resid [rows, d_model], k) -> (probs [rows, k], ids [rows, k])``, the lens's top k per row.

    Args:
        fn: the learner's function.
        model: the :class:`~anee_lite.core.model.UnrolledModel` whose final norm and unembedding it uses.
        resid_stack: [rows, d_model] residual streams to read.
        ks: the values of k it is tried with (one hard-coded k does not pass).
    """
    name = "Top-k lens readout"
    for k in ks:
        _check_top_k_once(name, fn, model, resid_stack, k)
    correct(name, f"(k = {', '.join(map(str, ks))})")


def _check_top_k_once(name: str, fn: Callable, model, resid_stack: Tensor, k: int) -> None:
    with torch.no_grad():
        logits = model.logits_from_resid(resid_stack)  # [rows, d_vocab]
        expected = logits.softmax(-1).topk(k)
        got = call(name, fn, resid_stack.clone(), k)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise ExerciseError(f"{name}: return a pair (probs, ids), got {type(got).__name__}")
    probs = tensor_like(f"{name} (probs, k={k})", got[0], expected.values)
    ids = tensor_like(f"{name} (ids, k={k})", got[1], expected.indices)
    if torch.equal(ids.long(), expected.indices) and close(probs, expected.values):
        return
    if close(probs, logits.topk(k).values):
        raise ExerciseError(f"{name}: those are logits; apply softmax over the vocabulary to get probabilities.")
    unnormed = (resid_stack @ model.arch.W_U.T if model.arch.W_U.shape[0] == logits.shape[-1]
                else resid_stack @ model.arch.W_U)
    if torch.equal(ids.long(), unnormed.topk(k).indices):
        raise ExerciseError(f"{name}: the final norm is missing: the lens is unembed(final_norm(resid)).")
    if k > 1 and torch.equal(ids.long(), expected.indices.flip(-1)):
        raise ExerciseError(f"{name}: the order is reversed: the most likely token comes first.")
    raise ExerciseError(f"{name}: with k={k}, not the top {k} tokens of softmax(unembed(final_norm(resid))) in "
                        "each row.")


@exercise("KL per layer")
def check_kl_per_layer(answer: Tensor | None, log_probs: Tensor) -> None:
    """Exercise: KL(final || row) for every row, from ``log_probs`` [rows, d_vocab] (last row = final)."""
    name = "KL per layer"
    log_p = log_probs[-1].expand_as(log_probs)  # [rows, V]
    expected = kl_divergence(log_p, log_probs)  # [rows]
    got = tensor_like(name, answer, expected)
    if close(got, expected, atol=1e-3):
        correct(name)
        return
    if close(got, kl_divergence(log_probs, log_p), atol=1e-3):
        raise ExerciseError(f"{name}: that is KL(layer || final). Weight by the FINAL distribution p: "
                            "sum p * (log p - log q).")
    if float(got[-1]) != 0 and abs(float(got[-1])) > 1e-3:
        raise ExerciseError(f"{name}: the last row should be 0 (the final distribution against itself), "
                            f"got {float(got[-1]):.3g}.")
    raise ExerciseError(f"{name}: wrong values; KL(p || q) = sum over the vocabulary of p * (log p - log q).")


@exercise("Patching hook")
def check_patch_hook(fn: Callable | None, model) -> None:
    """Exercise: ``fn(clean [B, T, d_model], position) -> hook``, a hook that pastes the clean residual at one position.

    Tried at three (layer, position) pairs on two random prompts of one length against :func:`~anee_lite.interventions.patch`.
    """
    name = "Patching hook"
    dims = model.dims
    gen = torch.Generator().manual_seed(21)
    T = 7
    clean_ids = torch.randint(0, dims.d_vocab, (1, T), generator=gen)
    corrupted_ids = torch.randint(0, dims.d_vocab, (1, T), generator=gen)
    layers = torch.randperm(dims.n_layers, generator=gen)[:3].tolist()
    for layer, position in zip(layers, (1, T - 1, 3)):
        point = f"blocks.{layer}.hook_resid_pre"
        clean = record(model, clean_ids, [point])[point]  # [1, T, d_model]
        hook = call(name, fn, clean.clone(), position)
        if not callable(hook):
            raise ExerciseError(f"{name}: return a function hook(tensor, name), got {type(hook).__name__}")
        try:
            got = model(corrupted_ids, hooks={point: hook}).logits
        except ValueError as error:  # the library refuses a hook's wrong return shape, naming it
            raise ExerciseError(f"{name}: {error}") from None
        expected = patch(model, clean_ids, corrupted_ids, point, positions=[position]).logits
        if close(got, expected):
            continue
        if close(got, patch(model, clean_ids, corrupted_ids, point).logits):
            raise ExerciseError(f"{name}: you pasted the clean residual at every position; paste it at `position` only "
                                "(a copy of the tensor with one row replaced).")
        if close(got, model(corrupted_ids).logits):
            raise ExerciseError(f"{name}: the corrupted run came out unchanged: return the edited tensor from the hook.")
        raise ExerciseError(f"{name}: layer {layer}, position {position}: not the corrupted run with the clean residual "
                            "pasted at that position. The residual is [batch, position, d_model].")
    correct(name, f"(layers {layers}: the same logits as interventions.patch)")
