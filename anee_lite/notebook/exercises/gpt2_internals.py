"""Checks of notebook 01 (GPT-2 internals): RMSNorm, the RoPE rotation, causal grouped attention.

The references are independent of the library's forward: PyTorch's ``rms_norm`` and
``scaled_dot_product_attention``, HuggingFace's rotary embedding."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ._convention import ExerciseError, call, close, correct, exercise, tensor_like


def _rms_norm(x: Tensor, scale: Tensor, eps: float) -> Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight=scale, eps=eps)


@exercise("RMSNorm")
def check_rms_norm(fn: Callable | None) -> None:
    """Exercise: ``fn(x [..., d], scale [d], eps) -> [..., d]`` is RMSNorm."""
    name = "RMSNorm"
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, 5, 16), (1, 3, 7)]:
        x = 3 * torch.randn(shape, generator=gen) + 1.5  # a non-zero mean, so LayerNorm gives another answer
        scale = torch.rand(shape[-1], generator=gen) + 0.5
        eps = 1e-5
        expected = _rms_norm(x, scale, eps)
        got = tensor_like(name, call(name, fn, x, scale, eps), expected)
        if close(got, expected):
            continue
        centred = x - x.mean(-1, keepdim=True)
        if close(got, _rms_norm(centred, scale, eps)):
            raise ExerciseError(f"{name}: you subtracted the mean first; that is LayerNorm. RMSNorm only divides "
                                "by the root-mean-square.")
        if close(got, _rms_norm(x, torch.ones_like(scale), eps)):
            raise ExerciseError(f"{name}: the learned scale is missing: multiply by `scale` at the end.")
        if close(got, x / x.pow(2).mean(-1, keepdim=True) * scale):
            raise ExerciseError(f"{name}: you divided by the mean square; take its square root.")
        raise ExerciseError(f"{name}: wrong values for an input of shape {shape}; RMSNorm is "
                            "x / sqrt(mean(x**2 over the last axis) + eps) * scale.")
    correct(name)


@exercise("RoPE rotation")
def check_rotate(fn: Callable | None) -> None:
    """Exercise: ``fn(t [..., D], cos [..., D], sin [..., D]) -> [..., D]`` applies RoPE (rotate-half layout)."""
    name = "RoPE rotation"
    gen = torch.Generator().manual_seed(2)
    D = 8
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))  # [D/2]
    angles = torch.tensor([0, 1, 5, 11]).float()[:, None] * inv_freq  # [T, D/2]
    angles = torch.cat([angles, angles], dim=-1)[None, None]  # [1, 1, T, D]: pair i's angle at i and i + D/2
    cos, sin = angles.cos(), angles.sin()
    t = torch.randn(1, 3, 4, D, generator=gen)  # [B, heads, T, D]
    expected = apply_rotary_pos_emb(t, t, cos[0], sin[0])[0]  # HuggingFace's rotation
    got = tensor_like(name, call(name, fn, t, cos, sin), expected)
    if close(got, expected):
        correct(name)
        return
    half = D // 2
    if close(got, t * cos + torch.cat([t[..., half:], -t[..., :half]], dim=-1) * sin):
        raise ExerciseError(f"{name}: the turn goes the wrong way: the pair (a, b) becomes (-b, a), so the "
                            "first half gets minus the second half.")
    if close(got, t * cos):
        raise ExerciseError(f"{name}: the sin part is missing: each coordinate also receives its partner "
                            "(i + D/2 or i - D/2) times sin, with a sign.")
    raise ExerciseError(f"{name}: wrong values. Split t into halves (coordinate i pairs with i + D/2) and turn "
                        "each pair (a, b) to (a cos - b sin, b cos + a sin), a from the first half, b from the second.")


@exercise("Causal attention")
def check_attention(fn: Callable | None) -> None:
    """Exercise: ``fn(q [B, H, T, D], k [B, K, T, D], v [B, K, T, D]) -> z [B, H, T, D]``, causal and grouped."""
    name = "Causal attention"
    gen = torch.Generator().manual_seed(3)
    for H, K, T, D in [(4, 2, 5, 8), (3, 3, 6, 16)]:
        q = torch.randn(1, H, T, D, generator=gen)
        k = torch.randn(1, K, T, D, generator=gen)
        v = torch.randn(1, K, T, D, generator=gen)
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != K)  # [1, H, T, D]
        got = tensor_like(f"{name} (H={H}, K={K})", call(name, fn, q, k, v), expected)
        if close(got, expected):
            continue
        k_rep, v_rep = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
        scores = q @ k_rep.transpose(-1, -2)  # [1, H, T, T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        if close(got, (scores / math.sqrt(D)).softmax(-1) @ v_rep):
            raise ExerciseError(f"{name}: the causal mask is missing: set the scores of later keys to -inf "
                                "before the softmax.")
        if close(got, scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v_rep):
            raise ExerciseError(f"{name}: the scores are not divided by sqrt(d_head).")
        if H != K and close(got, (q @ k.repeat(1, H // K, 1, 1).transpose(-1, -2) / math.sqrt(D))
                             .masked_fill(~causal, float("-inf")).softmax(-1) @ v.repeat(1, H // K, 1, 1)):
            raise ExerciseError(f"{name}: wrong grouping: query heads 0..{H // K - 1} share key/value head 0, so "
                                "use repeat_interleave (each head repeated in place), not repeat (tiling).")
        raise ExerciseError(f"{name}: wrong values for H={H}, K={K}, T={T}, D={D}.")
    correct(name)


def _real_residuals(model, layer: int, tokens: int, seed: int) -> Tensor:
    """[1, T, d_model]: the residual entering ``layer`` on random tokens (real scale, unseen text)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.dims.d_vocab, (1, tokens), generator=gen).to(model.device)
    return model.forward(ids, return_resid=True).activations[f"blocks.{layer}.hook_resid_pre"]


@exercise("Whole block")
def check_block(fn: Callable | None, model) -> None:
    """Exercise: ``fn(layer, x [1, T, d_model]) -> [1, T, d_model]``, decoder block ``layer`` of ``model``.

    Tried on three layers with residuals of random texts of random lengths, against the library's block
    (read through its hooks: the residual entering the layer is replaced by the learner's input).
    """
    name = "Whole block"
    gen = torch.Generator().manual_seed(13)
    n = model.dims.n_layers
    for layer in sorted({0, n - 1, int(torch.randint(0, n, (1,), generator=gen))}):
        T = int(torch.randint(3, 9, (1,), generator=gen))
        x = _real_residuals(model, layer, T, seed=layer + 100)  # [1, T, d_model]
        with torch.no_grad():
            out = model.forward(torch.zeros(1, T, dtype=torch.long, device=model.device), return_resid=True,
                                skip_layers=range(layer), exit_layers=layer + 1,  # only block `layer` runs
                                hooks={f"blocks.{layer}.hook_resid_pre": lambda t, _, x=x: x})
            expected = out.activations[f"blocks.{layer}.hook_resid_post"]  # [1, T, d_model]
            got = tensor_like(name, call(name, fn, layer, x.clone()), expected)
        if close(got, expected, atol=1e-3):
            continue
        mid = out.activations[f"blocks.{layer}.hook_resid_mid"]
        if close(got + x, expected, atol=1e-3):
            raise ExerciseError(f"{name}: at layer {layer} you return what the block adds; return x plus it "
                                "(the residual connections: x + attention(...), then + mlp(...)).")
        if close(got, mid, atol=1e-3):
            raise ExerciseError(f"{name}: at layer {layer} the MLP's part is missing: after attention, add "
                                "mlp(normalise(resid_mid)) too.")
        if close(got[:, :1], expected[:, :1], atol=1e-3):
            raise ExerciseError(f"{name}: at layer {layer} the first token is right but later ones are not: check "
                                "the causal mask, the grouped key/value heads and (Llama) the rotation of q and k.")
        raise ExerciseError(f"{name}: wrong values at layer {layer} (T={T}). Build it as in sections 3-5: "
                            "normalise, q/k/v, (rotate), causal attention, W_O, add; normalise, MLP, W_out, add.")
    correct(name, "It matches the library's block at three layers.")


@exercise("Whole model")
def check_logits(fn: Callable | None, model) -> None:
    """Exercise: ``fn(ids [1, T]) -> logits [1, T, d_vocab]``: embed, every block, final norm, unembed.

    Tried on two random texts against the library's forward (to 1e-4 relative).
    """
    name = "Whole model"
    gen = torch.Generator().manual_seed(14)
    for T in (5, 11):
        ids = torch.randint(0, model.dims.d_vocab, (1, T), generator=gen).to(model.device)
        with torch.no_grad():
            expected = model.forward(ids).logits  # [1, T, d_vocab]
            got = tensor_like(name, call(name, fn, ids), expected)
        scale = float(expected.abs().max())
        if close(got / scale, expected / scale):
            continue
        resid = model.forward(ids, return_resid=True).resid_stack()[-1]  # [1, T, d_model] after the last block
        if close(got, resid @ model.arch.W_U, atol=1e-3 * scale):
            raise ExerciseError(f"{name}: the final norm is missing: logits = unembed(final_norm(last residual)).")
        raise ExerciseError(f"{name}: wrong logits for a text of {T} tokens. Embed (GPT-2 adds W_pos[t] at "
                            "position t), run my_block for every layer in order, then final norm and W_U.")
    correct(name, "Your loop reproduces the model's logits.")
