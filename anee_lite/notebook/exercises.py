"""The checks behind the notebooks' exercises: each runs the learner's answer against the library.

The references are independent of the library's own forward: PyTorch's ``rms_norm`` and
``scaled_dot_product_attention``, HuggingFace's rotary embedding, and the library's budget, metrics and
cost model for the chapters that teach those. Every ``check_*`` function prints a one-line verdict when the answer is right (or not given yet:
``None``) and raises :class:`ExerciseError` with a hint when it is wrong, so a notebook cell reads
``check_rms_norm(my_rms_norm)``. Functions the learner writes are tried on inputs they have not
seen (random shapes and values), so an answer tuned to the notebook's prompt does not pass.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ..adaptive.guarantee import clopper_pearson_lower
from ..core.budget import budget_exit_layer
from ..core.metrics import kl_divergence, perplexity
from ..cost.charges import token_cost

__all__ = [
    "ExerciseError",
    "check_attention",
    "check_break_even_layer",
    "check_budget_rule",
    "check_clopper_pearson_lower",
    "check_confidence_score",
    "check_first_stable_layer",
    "check_kl_per_layer",
    "check_kv_owed",
    "check_lens_top_k",
    "check_perplexity",
    "check_rms_norm",
    "check_rotate",
    "check_unembed_flops",
    "kv_owed",
]


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what is off and how to look for it."""


class _NotAnswered(Exception):
    """The learner's function still returns None (the template's placeholder)."""


def _exercise(name: str):
    """Run a check unless its answer (first argument) is None, the template's placeholder: then, or when the
    learner's function still returns None, print 'not answered yet' instead of judging it."""

    def wrap(check):
        first = next(iter(inspect.signature(check).parameters))

        @functools.wraps(check)
        def run(*args, **kwargs):
            answer = args[0] if args else kwargs.get(first)
            try:
                if answer is not None:
                    return check(*args, **kwargs)
            except _NotAnswered:
                pass
            print(f"{name}: not answered yet (replace None with your answer and run the cell again)")
            return None

        return run

    return wrap


def _correct(name: str, extra: str = "") -> None:
    print(f"{name}: correct!{' ' + extra if extra else ''}")


def _call(name: str, fn: Callable, *args):
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        result = fn(*args)
    except NotImplementedError:
        raise  # the exercise's stub, not yet written: the notebook cell says so itself
    except Exception as error:  # the learner's code: report it in one line, not a trace from the checker
        raise ExerciseError(f"{name}: your function raised {type(error).__name__}: {error}") from error
    if result is None:
        raise _NotAnswered
    return result


def _number(name: str, got, *, whole: bool = False):
    """A learner's numeric answer as a Python number (a one-element tensor counts); anything else is a wrong answer."""
    if isinstance(got, Tensor):
        if got.numel() != 1:
            raise ExerciseError(f"{name}: expected a single number, got a tensor of shape {tuple(got.shape)}")
        got = got.item()
    integral = isinstance(got, numbers.Integral)  # no float() of it: a huge int would overflow
    if isinstance(got, bool) or not isinstance(got, numbers.Real) or not (
            integral or (math.isfinite(got) and (not whole or got == int(got)))):
        kind = "a whole number" if whole else "a finite number"
        raise ExerciseError(f"{name}: expected {kind}, got {got!r} ({type(got).__name__})")
    return got


def _tensor_like(name: str, got, expected: Tensor) -> Tensor:
    if not isinstance(got, Tensor):
        raise ExerciseError(f"{name}: expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    return got


def _rms_norm(x: Tensor, scale: Tensor, eps: float) -> Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight=scale, eps=eps)


def _close(a: Tensor, b: Tensor, atol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4))


# ----------------------------------------------------------------------------- notebook 01


@_exercise("RMSNorm")
def check_rms_norm(fn: Callable | None) -> None:
    """Exercise: ``fn(x [..., d], scale [d], eps) -> [..., d]`` is RMSNorm."""
    name = "RMSNorm"
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, 5, 16), (1, 3, 7)]:
        x = 3 * torch.randn(shape, generator=gen) + 1.5  # a non-zero mean, so LayerNorm gives another answer
        scale = torch.rand(shape[-1], generator=gen) + 0.5
        eps = 1e-5
        expected = _rms_norm(x, scale, eps)
        got = _tensor_like(name, _call(name, fn, x, scale, eps), expected)
        if _close(got, expected):
            continue
        centred = x - x.mean(-1, keepdim=True)
        if _close(got, _rms_norm(centred, scale, eps)):
            raise ExerciseError(f"{name}: you subtracted the mean first; that is LayerNorm. RMSNorm only divides "
                                "by the root-mean-square.")
        if _close(got, _rms_norm(x, torch.ones_like(scale), eps)):
            raise ExerciseError(f"{name}: the learned scale is missing: multiply by `scale` at the end.")
        if _close(got, x / x.pow(2).mean(-1, keepdim=True) * scale):
            raise ExerciseError(f"{name}: you divided by the mean square; take its square root.")
        raise ExerciseError(f"{name}: wrong values for an input of shape {shape}; RMSNorm is "
                            "x / sqrt(mean(x**2 over the last axis) + eps) * scale.")
    _correct(name)


@_exercise("RoPE rotation")
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
    got = _tensor_like(name, _call(name, fn, t, cos, sin), expected)
    if _close(got, expected):
        _correct(name)
        return
    half = D // 2
    if _close(got, t * cos + torch.cat([t[..., half:], -t[..., :half]], dim=-1) * sin):
        raise ExerciseError(f"{name}: the turn goes the wrong way: the pair (a, b) becomes (-b, a), so the "
                            "first half gets minus the second half.")
    if _close(got, t * cos):
        raise ExerciseError(f"{name}: the sin part is missing: add rotate_half(t) * sin.")
    raise ExerciseError(f"{name}: wrong values. Split t into halves t1, t2 (coordinate i pairs with i + D/2); "
                        "the answer is t * cos + cat(-t2, t1) * sin.")


@_exercise("Causal attention")
def check_attention(fn: Callable | None) -> None:
    """Exercise: ``fn(q [B, H, T, D], k [B, K, T, D], v [B, K, T, D]) -> z [B, H, T, D]``, causal and grouped."""
    name = "Causal attention"
    gen = torch.Generator().manual_seed(3)
    for H, K, T, D in [(4, 2, 5, 8), (3, 3, 6, 16)]:
        q = torch.randn(1, H, T, D, generator=gen)
        k = torch.randn(1, K, T, D, generator=gen)
        v = torch.randn(1, K, T, D, generator=gen)
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != K)  # [1, H, T, D]
        got = _tensor_like(f"{name} (H={H}, K={K})", _call(name, fn, q, k, v), expected)
        if _close(got, expected):
            continue
        k_rep, v_rep = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
        scores = q @ k_rep.transpose(-1, -2)  # [1, H, T, T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        if _close(got, (scores / math.sqrt(D)).softmax(-1) @ v_rep):
            raise ExerciseError(f"{name}: the causal mask is missing: set the scores of later keys to -inf "
                                "before the softmax.")
        if _close(got, scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v_rep):
            raise ExerciseError(f"{name}: the scores are not divided by sqrt(d_head).")
        if H != K and _close(got, (q @ k.repeat(1, H // K, 1, 1).transpose(-1, -2) / math.sqrt(D))
                             .masked_fill(~causal, float("-inf")).softmax(-1) @ v.repeat(1, H // K, 1, 1)):
            raise ExerciseError(f"{name}: wrong grouping: query heads 0..{H // K - 1} share key/value head 0, so "
                                "use repeat_interleave (each head repeated in place), not repeat (tiling).")
        raise ExerciseError(f"{name}: wrong values for H={H}, K={K}, T={T}, D={D}.")
    _correct(name)


# ----------------------------------------------------------------------------- notebook 02


@_exercise("First stable layer")
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
    _correct(name, f"after {expected} of {len(ranks) - 1} layers.")


@_exercise("Top-k lens readout")
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
        got = _call(name, fn, resid_stack, k)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise ExerciseError(f"{name}: return a pair (probs, ids), got {type(got).__name__}")
    probs = _tensor_like(name + " (probs)", got[0], expected.values)
    ids = _tensor_like(name + " (ids)", got[1], expected.indices)
    if torch.equal(ids.long(), expected.indices) and _close(probs, expected.values):
        _correct(name)
        return
    if _close(probs, logits.topk(k).values):
        raise ExerciseError(f"{name}: those are logits; apply softmax over the vocabulary to get probabilities.")
    unnormed = (resid_stack @ model.arch.W_U.T if model.arch.W_U.shape[0] == logits.shape[-1]
                else resid_stack @ model.arch.W_U)
    if torch.equal(ids.long(), unnormed.topk(k).indices):
        raise ExerciseError(f"{name}: the final norm is missing: the lens is unembed(final_norm(resid)).")
    if torch.equal(ids.long(), expected.indices.flip(-1)):
        raise ExerciseError(f"{name}: the order is reversed: the most likely token comes first.")
    raise ExerciseError(f"{name}: not the top {k} tokens of softmax(unembed(final_norm(resid))) in each row.")


@_exercise("KL per layer")
def check_kl_per_layer(answer: Tensor | None, log_probs: Tensor) -> None:
    """Exercise: KL(final || row) for every row, from ``log_probs`` [rows, d_vocab] (last row = final)."""
    name = "KL per layer"
    log_p = log_probs[-1].expand_as(log_probs)  # [rows, V]
    expected = kl_divergence(log_p, log_probs)  # [rows]
    got = _tensor_like(name, answer, expected)
    if _close(got, expected, atol=1e-3):
        _correct(name)
        return
    if _close(got, kl_divergence(log_probs, log_p), atol=1e-3):
        raise ExerciseError(f"{name}: that is KL(layer || final). Weight by the FINAL distribution p: "
                            "sum p * (log p - log q).")
    if float(got[-1]) != 0 and abs(float(got[-1])) > 1e-3:
        raise ExerciseError(f"{name}: the last row should be 0 (the final distribution against itself), "
                            f"got {float(got[-1]):.3g}.")
    raise ExerciseError(f"{name}: wrong values; KL(p || q) = sum over the vocabulary of p * (log p - log q).")


# ----------------------------------------------------------------------------- notebook 03

_BUDGET_CASES = [(30, 0.7, 2, 0.1), (12, 1.0, 2, 0.1), (12, 0.5, 2, 0.1), (12, 0.05, 2, 0.1), (30, 0.0, 0, 0.1),
                 (30, 1.0, 2, 0.0), (10, 0.3, 2, 0.1), (24, 0.55, 4, 0.2), (7, 0.9, 1, 0.25), (30, 0.4, 30, 0.1)]


@_exercise("Budget rule")
def check_budget_rule(fn: Callable | None) -> None:
    """Exercise: ``fn(n_layers, energy_budget, min_layers, exit_budget_threshold) -> layers run``, the seed's rule."""
    name = "Budget rule"
    for n_layers, budget, min_layers, threshold in _BUDGET_CASES:
        expected = budget_exit_layer(n_layers, budget, min_layers, threshold)
        got = _number(name, _call(name, fn, n_layers, budget, min_layers, threshold), whole=True)
        if got == expected:
            continue
        case = f"n_layers={n_layers}, energy_budget={budget}, min_layers={min_layers}, threshold={threshold}"
        if isinstance(got, int) and got == expected - 1 and budget - got / n_layers < threshold:
            raise ExerciseError(
                f"{name}: for {case} you return {got}, the rule gives {expected}. Before layer {got} the remaining "
                f"budget is {budget} - {got}/{n_layers} = {budget - got / n_layers!r} in floating point, not "
                f"{round(budget - got / n_layers, 9)}: compare with a small slack (remaining < threshold - 1e-9).")
        raise ExerciseError(f"{name}: for {case} you return {got!r}, the rule gives {expected}.")
    _correct(name, f"({len(_BUDGET_CASES)} settings agree with budget_exit_layer)")


@_exercise("Perplexity")
def check_perplexity(fn: Callable | None) -> None:
    """Exercise: ``fn(logits [B, T, V], ids [B, T]) -> float``, the perplexity of each next token."""
    name = "Perplexity"
    gen = torch.Generator().manual_seed(4)
    logits = 2 * torch.randn(2, 6, 11, generator=gen)  # [B, T, V]
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    expected = perplexity(logits, ids)
    got = float(_number(name, _call(name, fn, logits, ids)))
    if math.isclose(got, expected, rel_tol=1e-4):
        uniform = _number(name, _call(name, fn, torch.zeros(1, 5, 11), ids[:1, :5]))
        if not math.isclose(float(uniform), 11.0, rel_tol=1e-4):
            raise ExerciseError(f"{name}: uniform logits over 11 tokens should give 11, got {float(uniform):.4g}.")
        _correct(name)
        return
    log_probs = logits.log_softmax(-1)
    unshifted = float((-log_probs.gather(-1, ids[..., None])).mean().exp())
    if math.isclose(got, unshifted, rel_tol=1e-4):
        raise ExerciseError(f"{name}: logits[:, t] predict ids[:, t + 1]; you scored each token against its own "
                            "position. Drop the last logits and the first id.")
    if math.isclose(got, math.log(expected), rel_tol=1e-4):
        raise ExerciseError(f"{name}: that is the mean negative log-likelihood; perplexity is its exp.")
    raise ExerciseError(f"{name}: got {got:.4g}, expected {expected:.4g}: exp(mean over positions of "
                        "-log softmax(logits[:, t])[ids[:, t + 1]]).")


# ----------------------------------------------------------------------------- notebook 04


@_exercise("Unembedding FLOPs")
def check_unembed_flops(answer: int | None, dims) -> None:
    """Exercise: FLOPs of one token's unembedding (the matrix product only), from the model's sizes."""
    name = "Unembedding FLOPs"
    expected = 2 * dims.d_model * dims.d_vocab
    answer = _number(name, answer)
    if answer == expected:
        _correct(name, f"{expected / 1e6:.1f} MFLOPs per token.")
        return
    if answer == dims.d_model * dims.d_vocab:
        raise ExerciseError(f"{name}: that is the number of multiply-adds; each is 2 FLOPs.")
    raise ExerciseError(f"{name}: got {answer!r}. The unembedding multiplies a d_model vector by a "
                        "[d_model, d_vocab] matrix: one multiply-add per matrix entry.")


def kv_owed(exit_layers: list[int], n_layers: int) -> int:
    """(token, layer) K/V entries a lazy cache fills by propagation once every token has decoded.

    Token t lacks its own K/V at every layer at or above its exit; such an entry is filled when a later
    token runs that layer (and never otherwise).
    """
    owed = 0
    for t, exit_layer in enumerate(exit_layers):
        deepest_later = max(exit_layers[t + 1:], default=0)  # layers below it are needed by some later token
        owed += max(0, deepest_later - exit_layer)
    return owed


@_exercise("K/V a token owes")
def check_kv_owed(fn: Callable | None, model, input_ids: Tensor) -> None:
    """Exercise: ``fn(exit_layers, n_layers) -> int``, the propagated K/V entries; checked on the real cache.

    Args:
        fn: the learner's function.
        model: the :class:`~anee_lite.core.model.UnrolledModel` to decode with.
        input_ids: [1, T] ids to decode one at a time (T >= 4).
    """
    name = "K/V a token owes"
    n = model.dims.n_layers
    gen = torch.Generator().manual_seed(5)
    cases = [[n, 2, 1, n], [n, n, n, n], [1, 1, 1, 1], [n, 1, n, 1]]
    cases += [torch.randint(1, n + 1, (input_ids.shape[1],), generator=gen).tolist() for _ in range(3)]
    for exits in cases:
        exits = [min(max(e, 1), n) for e in exits][: input_ids.shape[1]]
        cache = None
        with torch.no_grad():
            for t, e in enumerate(exits):
                cache = model(input_ids[:, t:t + 1], exit_layers=e, past_key_values=cache,
                              use_cache=True).past_key_values
        got = _number(name, _call(name, fn, list(exits), n), whole=True)
        if got == cache.propagated:
            continue
        eager = sum(n - e for e in exits[:-1])
        if got == eager:
            raise ExerciseError(f"{name}: for exits {exits} you count every missing entry ({got}); the cache fills "
                                f"only the layers a later token runs, lazily: it propagated {cache.propagated}.")
        raise ExerciseError(f"{name}: for exits {exits} (n_layers={n}) you say {got!r}, the real cache propagated "
                            f"{cache.propagated}. Token t's entry at layer l is filled only if t stopped before l "
                            "and some later token runs layer l.")
    _correct(name, f"({len(cases)} exit patterns agree with the real cache)")


@_exercise("Break-even layer")
def check_break_even_layer(answer: int | None, dims, context_len: int) -> None:
    """Exercise: the smallest exit L at which L logit-lens checks make a token dearer than the full model.

    The last check's logits are the token's output, so it is not unembedded again (``unembed=False``).
    """
    name = "Break-even layer"
    full = token_cost(dims, layers_run=dims.n_layers, context_len=context_len).flops

    def with_checks(L):  # the last check's logits are the output: no second unembedding
        return token_cost(dims, layers_run=L, context_len=context_len, lens_checks=L, unembed=False).flops

    if isinstance(answer, bool) or not isinstance(answer, int) or not 1 <= answer <= dims.n_layers:
        raise ExerciseError(f"{name}: expected a layer in [1, {dims.n_layers}], got {answer!r}")
    if with_checks(answer) <= full:
        raise ExerciseError(f"{name}: at L={answer} the checked token costs {with_checks(answer) / full:.0%} of the "
                            "full model: still cheaper.")
    if answer > 1 and with_checks(answer - 1) > full:
        raise ExerciseError(f"{name}: L={answer - 1} already costs more than the full model.")
    _correct(name, f"from L={answer} a lens check at every layer costs more than running them all.")


@_exercise("Confidence score")
def check_confidence_score(fn: Callable | None, controller) -> None:
    """Exercise: ``fn(logits) -> [B, T]`` top-1 softmax probability, checked against ``controller.score``.

    Args:
        fn: the learner's function of lens logits [B, T, d_vocab].
        controller: a ``confidence`` controller (:class:`~anee_lite.adaptive.controllers.ConfidenceExit`);
            the check reads its lens at every allowed exit layer on random residuals.
    """
    name = "Confidence score"
    gen = torch.Generator().manual_seed(11)
    d_model = controller.lens.model.dims.d_model
    for layer in controller.exit_layers_allowed:
        resid = 3 * torch.randn(2, 5, d_model, generator=gen)  # [B, T, d_model]
        with torch.no_grad():
            expected = controller.score(layer, resid)  # [B, T]
            logits = controller.log_probs(layer, resid) + 7 * torch.randn(2, 5, 1, generator=gen)  # [B, T, d_vocab]
        got = _tensor_like(name, _call(name, fn, logits.clone()), expected)
        if _close(got.float(), expected, atol=1e-4):
            continue
        if got.dtype in (torch.int64, torch.int32):
            raise ExerciseError(f"{name}: you return token ids (argmax); return the top-1 *probability*.")
        if _close(got.float(), logits.max(-1).values, atol=1e-4):
            raise ExerciseError(f"{name}: that is the largest logit; turn logits into probabilities first (softmax).")
        if (got > 1 + 1e-6).any() or (got < 0).any():
            raise ExerciseError(f"{name}: a probability lies in [0, 1]; you return values in "
                                f"[{got.min().item():.3g}, {got.max().item():.3g}].")
        raise ExerciseError(f"{name}: at layer {layer} you return {got.flatten()[:3].tolist()}..., the controller "
                            f"scores {expected.flatten()[:3].tolist()}... (softmax over the last dimension, then max).")
    _correct(name, f"(it matches ConfidenceExit.score at layers {list(controller.exit_layers_allowed)})")


@_exercise("Clopper-Pearson lower bound")
def check_clopper_pearson_lower(fn: Callable | None) -> None:
    """Exercise: ``fn(k, n, delta) -> float``, the one-sided exact lower bound, checked against the library's."""
    name = "Clopper-Pearson lower bound"
    cases = [(9, 10, 0.1), (0, 5, 0.1), (50, 50, 0.1), (180, 200, 0.05), (118, 128, 0.1), (3, 40, 0.2)]
    for k, n, delta in cases:
        expected = clopper_pearson_lower(k, n, delta)
        got = _call(name, fn, k, n, delta)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}") from None
        if abs(got - expected) <= 1e-4:
            continue
        if abs(got - k / n) <= 1e-9:
            raise ExerciseError(f"{name}: {got:.4f} is k/n, the measured rate; the bound lies below it "
                                "(how low can p be and still make k or more successes not too rare?).")
        if k > 0 and abs(got - clopper_pearson_lower(k, n, delta / 2)) <= 1e-4:
            raise ExerciseError(f"{name}: you used delta/2 (a two-sided interval); the bound is one-sided: "
                                "P(Binomial(n, p) >= k) = delta.")
        if got > k / n:
            raise ExerciseError(f"{name}: for k={k}, n={n} you return {got:.4f}, above k/n = {k / n:.4f}; "
                                "a lower bound must not exceed the measured rate.")
        raise ExerciseError(f"{name}: for k={k}, n={n}, delta={delta} you return {got:.4f}, expected {expected:.4f}: "
                            "the p at which P(Binomial(n, p) >= k) equals delta (0 when k = 0).")
    _correct(name, f"({len(cases)} cases agree with anee_lite.adaptive.guarantee)")
