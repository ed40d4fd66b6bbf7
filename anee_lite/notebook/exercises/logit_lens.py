"""Checks of notebook 02 (the logit lens): the first stable layer, the top-k readout, KL per layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...core.metrics import kl_divergence
from ._convention import ExerciseError, call, close, correct, exercise, tensor_like


@exercise("First stable layer")
def check_first_stable_layer(answer: int | None, ranks) -> None:
    """Exercise: the first row from which the final token has rank 1 (top) in every later row.

    Args:
        answer: the learner's row (layers run).
        ranks: 1-based rank of the final token at each row (0 = embeddings .. n_layers).
    """
    name = "First stable layer"
    ranks = [int(r) for r in ranks]
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(ranks):
        raise ExerciseError(f"{name}: expected a whole number of layers in [0, {len(ranks) - 1}], got {answer!r}")
    not_top = [row for row, r in enumerate(ranks) if r != 1]
    expected = not_top[-1] + 1 if not_top else 0
    if answer < expected:
        raise ExerciseError(f"{name}: after {answer} layers it is on top, but it drops to rank "
                            f"{ranks[expected - 1]} after {expected - 1} layers: it must stay on top.")
    if answer > expected:
        raise ExerciseError(f"{name}: it is already on top for good after {answer - 1} layers; look earlier.")
    correct(name, f"after {expected} of {len(ranks) - 1} layers.")


@exercise("Top-k lens readout")
def check_lens_top_k(fn: Callable | None, model, resid_stack: Tensor, k: int = 5) -> None:
    """Exercise: ``fn(resid [rows, d_model], k) -> (probs [rows, k], ids [rows, k])``, the lens's top k per row.

    Args:
        fn: the learner's function.
        model: the :class:`~anee_lite.core.model.UnrolledModel` whose final norm and unembedding it uses.
        resid_stack: [rows, d_model] residual streams to read.
        k: how many tokens per row.
    """
    name = "Top-k lens readout"
    with torch.no_grad():
        logits = model.logits_from_resid(resid_stack)  # [rows, d_vocab]
        expected = logits.softmax(-1).topk(k)
        got = call(name, fn, resid_stack, k)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise ExerciseError(f"{name}: return a pair (probs, ids), got {type(got).__name__}")
    probs = tensor_like(name + " (probs)", got[0], expected.values)
    ids = tensor_like(name + " (ids)", got[1], expected.indices)
    if torch.equal(ids.long(), expected.indices) and close(probs, expected.values):
        correct(name)
        return
    if close(probs, logits.topk(k).values):
        raise ExerciseError(f"{name}: those are logits; apply softmax over the vocabulary to get probabilities.")
    unnormed = (resid_stack @ model.arch.W_U.T if model.arch.W_U.shape[0] == logits.shape[-1]
                else resid_stack @ model.arch.W_U)
    if torch.equal(ids.long(), unnormed.topk(k).indices):
        raise ExerciseError(f"{name}: the final norm is missing: the lens is unembed(final_norm(resid)).")
    if torch.equal(ids.long(), expected.indices.flip(-1)):
        raise ExerciseError(f"{name}: the order is reversed: the most likely token comes first.")
    raise ExerciseError(f"{name}: not the top {k} tokens of softmax(unembed(final_norm(resid))) in each row.")


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
