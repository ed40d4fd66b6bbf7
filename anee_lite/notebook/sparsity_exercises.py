"""Checks for notebook 06's exercises: each compares the learner's function with the library on real inputs."""

from __future__ import annotations

import torch

from ..core.masks import sparsify_activations
from ..sparsity.scores import block_influence
from .exercises import _call, _exercise, _number, _tensor_like


@_exercise("Block Influence")
def check_block_influence(fn, model, input_ids) -> float | None:
    """Exercise 1: ``fn(resid_pre, resid_post) -> float``, ShortGPT's Block Influence of one layer.

    Compared with :func:`anee_lite.sparsity.block_influence` on every layer of ``model`` (an
    UnrolledModel) for ``input_ids``. Returns the largest difference (None while not answered); raises
    ExerciseError (an AssertionError) with a hint.
    """
    name = "Block Influence"
    expected = block_influence(model, input_ids)  # [n_layers]
    acts = model(input_ids, return_resid=True).activations
    worst = 0.0
    for layer in range(model.dims.n_layers):
        got = _call(name, fn, acts[f"blocks.{layer}.hook_resid_pre"], acts[f"blocks.{layer}.hook_resid_post"])
        got = float(_number(name, got))  # NaN is refused there: it would pass every comparison below
        diff = abs(got - float(expected[layer]))
        if diff > 1e-4:
            hint = ("it should be 1 minus the cosine similarity between the two vectors of each token, "
                    "averaged over all tokens (torch.nn.functional.cosine_similarity(..., dim=-1))")
            if got < 0 or got > 2:
                hint = "Block Influence lies in [0, 2]: 1 - cos, and a cosine lies in [-1, 1]. " + hint
            raise AssertionError(f"layer {layer}: got {got:.5f}, expected {float(expected[layer]):.5f}; {hint}")
        worst = max(worst, diff)
    print(f"Correct: your Block Influence matches on all {model.dims.n_layers} layers (max difference {worst:.1e}).")
    return worst


@_exercise("Activation sparsity")
def check_sparsify(fn) -> None:
    """Exercise 2: ``fn(hidden [B, T, d_mlp], fraction) -> same shape`` zeroing each token's smallest magnitudes.

    Compared with :func:`anee_lite.core.masks.sparsify_activations` on random activations with ties
    avoided, several fractions.
    """
    name = "Activation sparsity"
    gen = torch.Generator().manual_seed(0)
    for fraction in (0.0, 0.25, 0.5, 0.9):
        hidden = torch.randn(2, 5, 64, generator=gen)
        got = _tensor_like(name, _call(name, fn, hidden.clone(), fraction), hidden)
        expected = sparsify_activations(hidden, 0, fraction) if fraction > 0 else hidden
        zeros = int((got == 0).sum(-1)[0, 0])
        if zeros != int(fraction * 64):
            raise AssertionError(f"fraction={fraction}: each token should have {int(fraction * 64)} of 64 entries "
                                 f"zeroed, yours has {zeros}; sort by magnitude (abs), per token (dim=-1)")
        if not torch.equal(got, expected):
            raise AssertionError(f"fraction={fraction}: the right number of zeros but not the right entries: zero "
                                 "the smallest |h|, keep the others unchanged (signs included)")
    print("Correct: your activation sparsity zeroes exactly the smallest-magnitude entries of each token.")
