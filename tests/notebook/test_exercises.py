"""The notebooks' exercise checks: a right answer passes, a wrong one gets a helpful message, None waits."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import VOCAB, random_gpt2, random_llama

from anee_lite import UnrolledModel
from anee_lite.core.metrics import kl_divergence
from anee_lite.notebook import exercises as ex
from anee_lite.notebook.exercises import ExerciseError


def test_none_means_not_answered_yet(capsys):
    ex.check_rms_norm(None)
    ex.check_first_stable_layer(None)
    assert capsys.readouterr().out.count("not answered yet") == 2


# --- notebook 01 -----------------------------------------------------------------------------------------


def right_rms_norm(x, scale, eps):
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * scale


def test_rms_norm_right_and_wrong(capsys):
    ex.check_rms_norm(right_rms_norm)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="LayerNorm"):
        ex.check_rms_norm(lambda x, s, e: right_rms_norm(x - x.mean(-1, keepdim=True), s, e))
    with pytest.raises(ExerciseError, match="scale"):
        ex.check_rms_norm(lambda x, s, e: right_rms_norm(x, torch.ones_like(s), e))
    with pytest.raises(ExerciseError, match="raised ZeroDivisionError"):
        ex.check_rms_norm(lambda x, s, e: 1 / 0)
    with pytest.raises(ExerciseError, match="shape"):
        ex.check_rms_norm(lambda x, s, e: x[..., :1])


def test_an_unwritten_stub_is_not_a_wrong_answer(capsys):
    def stub(*args):
        raise NotImplementedError  # a stub a learner may write instead of returning None

    ex.check_accept(stub)
    ex.check_rms_norm(stub)
    assert capsys.readouterr().out.count("not answered yet") == 2


def right_rotate(t, cos, sin):
    t1, t2 = t.chunk(2, dim=-1)
    return t * cos + torch.cat([-t2, t1], dim=-1) * sin


def test_rotate_right_and_wrong(capsys):
    ex.check_rotate(right_rotate)
    with pytest.raises(ExerciseError) as wrong:
        ex.check_rotate(lambda t, c, s: t * s)
    assert "cat(" not in str(wrong.value) and "rotate_half" not in str(wrong.value)  # a hint, not the code
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="wrong way"):
        ex.check_rotate(lambda t, c, s: t * c + torch.cat([t.chunk(2, -1)[1], -t.chunk(2, -1)[0]], -1) * s)
    with pytest.raises(ExerciseError, match="sin part"):
        ex.check_rotate(lambda t, c, s: t * c)


def right_attention(q, k, v):
    H, K, T, D = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(),
                                                                  float("-inf"))
    return scores.softmax(-1) @ v


def test_attention_right_and_wrong(capsys):
    ex.check_attention(right_attention)
    assert "correct" in capsys.readouterr().out

    def no_mask(q, k, v):
        H, K = q.shape[1], k.shape[1]
        k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
        return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v

    with pytest.raises(ExerciseError, match="causal mask"):
        ex.check_attention(no_mask)
    with pytest.raises(ExerciseError, match="sqrt"):
        ex.check_attention(lambda q, k, v: right_attention(q * math.sqrt(q.shape[-1]), k, v))

    def tiled(q, k, v):
        return right_attention(q, k.repeat(1, q.shape[1] // k.shape[1], 1, 1), v.repeat(1, q.shape[1] // k.shape[1],
                                                                                       1, 1))

    with pytest.raises(ExerciseError, match="repeat_interleave"):
        ex.check_attention(tiled)


# --- notebook 02 -----------------------------------------------------------------------------------------


def right_first_stable(ranks):
    not_top = [row for row, r in enumerate(ranks) if r != 1]
    return not_top[-1] + 1 if not_top else 0


def test_first_stable_layer(capsys):
    ex.check_first_stable_layer(right_first_stable)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="stay on top"):  # the first row on top, not the first for good
        ex.check_first_stable_layer(lambda ranks: ranks.index(1) if 1 in ranks else len(ranks))
    with pytest.raises(ExerciseError, match="wrong for ranks"):
        ex.check_first_stable_layer(lambda ranks: 29)  # the notebook's own answer, hard-coded
    with pytest.raises(ExerciseError, match="wrong for ranks"):  # off by one
        ex.check_first_stable_layer(lambda ranks: max(0, right_first_stable(ranks) - 1))
    with pytest.raises(ExerciseError, match="whole number"):
        ex.check_first_stable_layer(lambda ranks: "4")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lensed(request):
    hf = random_gpt2() if request.param == "gpt2" else random_llama()
    model = UnrolledModel(hf)
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.forward(ids, return_resid=True)
    return model, out.resid_stack()[:, 0, -1]  # [rows, d_model]


def test_lens_top_k_right_and_wrong(lensed, capsys):
    model, resid = lensed

    def right(r, k):
        top = model.logits_from_resid(r).softmax(-1).topk(k)
        return top.values, top.indices

    ex.check_lens_top_k(right, model, resid)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="logits"):
        ex.check_lens_top_k(lambda r, k: model.logits_from_resid(r).topk(k), model, resid)
    with pytest.raises(ExerciseError, match="reversed"):
        ex.check_lens_top_k(lambda r, k: tuple(t.flip(-1) for t in right(r, k)), model, resid)
    with pytest.raises(ExerciseError, match="pair"):
        ex.check_lens_top_k(lambda r, k: right(r, k)[0], model, resid)
    with pytest.raises(ExerciseError, match=r"expected shape"):  # k hard-coded to the notebook's 5
        ex.check_lens_top_k(lambda r, k: right(r, 5), model, resid)


def test_kl_per_layer_right_and_wrong(capsys):
    log_q = (3 * torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(2))).log_softmax(-1)  # [rows, V]
    right = (log_q[-1].exp() * (log_q[-1] - log_q)).sum(-1)
    ex.check_kl_per_layer(right, log_q)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="KL\\(layer"):
        ex.check_kl_per_layer(kl_divergence(log_q, log_q[-1].expand_as(log_q)), log_q)
    with pytest.raises(ExerciseError, match="shape"):
        ex.check_kl_per_layer(right[:-1], log_q)


# --- notebook 03 -----------------------------------------------------------------------------------------


def right_budget_rule(n_layers, budget, min_layers, threshold):
    for layer in range(n_layers):
        if layer >= min_layers and max(0.0, budget - layer / n_layers) < threshold - 1e-9:
            return layer
    return n_layers


def test_budget_rule_right_and_the_floating_point_trap(capsys):
    ex.check_budget_rule(right_budget_rule)
    assert "correct" in capsys.readouterr().out

    def no_slack(n_layers, budget, min_layers, threshold):
        for layer in range(n_layers):
            if layer >= min_layers and budget - layer / n_layers < threshold:
                return layer
        return n_layers

    with pytest.raises(ExerciseError, match="floating point"):
        ex.check_budget_rule(no_slack)
    with pytest.raises(ExerciseError, match="the rule gives"):
        ex.check_budget_rule(lambda n, b, m, t: n)


def right_direct_effects(z, W_O, readout):
    T, H, D = z.shape
    effects = []
    for h in range(H):
        added = z[:, h] @ W_O[h * D:(h + 1) * D]  # [T, d_model]: what head h adds at each position
        effects.append((added * readout).sum(-1).abs().mean())
    return torch.stack(effects)


def test_direct_effects_right_and_wrong(capsys):
    ex.check_direct_effects(right_direct_effects)
    assert "correct" in capsys.readouterr().out

    def signed(z, W_O, readout):
        T, H, D = z.shape
        return torch.stack([((z[:, h] @ W_O[h * D:(h + 1) * D]) * readout).sum(-1).mean() for h in range(H)])

    def interleaved(z, W_O, readout):
        T, H, D = z.shape
        return torch.stack([((z[:, h] @ W_O[h::H]) * readout).sum(-1).abs().mean() for h in range(H)])

    with pytest.raises(ExerciseError, match="absolute value"):
        ex.check_direct_effects(signed)
    with pytest.raises(ExerciseError, match="interleaves"):
        ex.check_direct_effects(interleaved)
    with pytest.raises(ExerciseError, match="sum over positions"):
        ex.check_direct_effects(lambda z, W_O, r: right_direct_effects(z, W_O, r) * z.shape[0])
    with pytest.raises(ExerciseError, match="expected shape"):
        ex.check_direct_effects(lambda z, W_O, r: right_direct_effects(z, W_O, r)[:-1])


@pytest.fixture(scope="module")
def ablation_model():
    return UnrolledModel(random_llama(n_layers=4, d_model=32, n_heads=4, n_kv_heads=2, seed=3))


def right_ablation_cost(model, ids, effects, k):
    from anee_lite.interventions import ablate_heads

    n_heads = effects.shape[1]
    heads = {}
    for i in effects.flatten().argsort()[:k].tolist():
        heads.setdefault(i // n_heads, []).append(i % n_heads)
    full = model(ids).logits.argmax(-1)
    ablated = model(ids, hooks=ablate_heads(model, heads)).logits.argmax(-1)
    return float((full == ablated).float().mean())


def test_ablation_cost_right_and_wrong(ablation_model, capsys):
    from anee_lite.interventions import ablate_heads

    ids = torch.randint(0, VOCAB, (1, 60), generator=torch.Generator().manual_seed(1))
    ex.check_ablation_cost(right_ablation_cost, ablation_model, ids)
    assert "correct" in capsys.readouterr().out

    with pytest.raises(ExerciseError, match="LARGEST"):
        ex.check_ablation_cost(lambda m, i, e, k: right_ablation_cost(m, i, -e, k), ablation_model, ids)
    with pytest.raises(ExerciseError, match="were the heads removed"):
        ex.check_ablation_cost(lambda m, i, e, k: 1.0, ablation_model, ids)

    def accuracy(model, ids, effects, k):  # against the text instead of the full model
        n_heads = effects.shape[1]
        heads = {}
        for i in effects.flatten().argsort()[:k].tolist():
            heads.setdefault(i // n_heads, []).append(i % n_heads)
        predicted = model(ids, hooks=ablate_heads(model, heads)).logits.argmax(-1)[:, :-1]
        return float((predicted == ids[:, 1:]).float().mean())

    with pytest.raises(ExerciseError, match="accuracy"):
        ex.check_ablation_cost(accuracy, ablation_model, ids)

    def swapped(model, ids, effects, k):  # layer and head read with the wrong stride
        n_layers = effects.shape[0]
        heads = {}
        for i in effects.flatten().argsort()[:k].tolist():
            heads.setdefault(i % n_layers, []).append(i // n_layers)
        full = model(ids).logits.argmax(-1)
        return float((model(ids, hooks=ablate_heads(model, heads)).logits.argmax(-1) == full).float().mean())

    with pytest.raises(ExerciseError):
        ex.check_ablation_cost(swapped, ablation_model, ids)


def test_perplexity_right_and_wrong(capsys):
    def right(logits, ids):
        log_probs = logits[:, :-1].log_softmax(-1)
        return float((-log_probs.gather(-1, ids[:, 1:, None])).mean().exp())

    ex.check_perplexity(right)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="own"):
        ex.check_perplexity(lambda lg, ids: float((-lg.log_softmax(-1).gather(-1, ids[..., None])).mean().exp()))
    with pytest.raises(ExerciseError, match="its exp"):
        ex.check_perplexity(lambda lg, ids: math.log(right(lg, ids)))


# --- notebook 04 -----------------------------------------------------------------------------------------


def test_unembed_flops(capsys):
    model = UnrolledModel(random_llama())
    dims = model.dims
    ex.check_unembed_flops(2 * dims.d_model * dims.d_vocab, dims)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="2 FLOPs"):
        ex.check_unembed_flops(dims.d_model * dims.d_vocab, dims)


@pytest.mark.slow
@pytest.mark.parametrize("make", [random_gpt2, random_llama])
def test_kv_owed_matches_the_real_cache(make, capsys):
    model = UnrolledModel(make(n_layer=4) if make is random_gpt2 else make(n_layers=4))
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(1))
    ex.check_kv_owed(lazy_kv_owed, model, ids)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="lazily"):
        ex.check_kv_owed(lambda exits, n: sum(n - e for e in exits[:-1]), model, ids)
    with pytest.raises(ExerciseError, match="filled only if"):
        ex.check_kv_owed(lambda exits, n: 0, model, ids)


def lazy_kv_owed(exit_layers, n_layers):
    """The notebook's solution: token t's missing layers that some later token runs."""
    return sum(max(0, max(exit_layers[t + 1:], default=0) - e) for t, e in enumerate(exit_layers))


def test_the_reference_solution_by_hand():
    assert lazy_kv_owed([30, 2, 1, 30], 30) == 28 + 29
    assert lazy_kv_owed([5, 2, 4, 3], 5) == 0 + 2 + 0 + 0  # token 1 owes layers 2, 3 (token 2 runs 4 layers)
    assert lazy_kv_owed([1, 1, 1], 8) == 0


def test_break_even_layer(capsys):
    dims = UnrolledModel(random_llama(n_layers=3)).dims
    from anee_lite.cost import token_cost

    full = token_cost(dims, layers_run=dims.n_layers, context_len=8).flops
    answer = next(L for L in range(1, dims.n_layers + 1)
                  if token_cost(dims, layers_run=L, context_len=8, lens_checks=L, unembed=False).flops > full)
    ex.check_break_even_layer(answer, dims, 8)
    assert "correct" in capsys.readouterr().out
    if answer < dims.n_layers:
        with pytest.raises(ExerciseError, match="already costs more"):
            ex.check_break_even_layer(answer + 1, dims, 8)
    if answer > 1:
        with pytest.raises(ExerciseError, match="still cheaper"):
            ex.check_break_even_layer(answer - 1, dims, 8)



def test_a_function_that_still_returns_none_is_not_answered_yet(capsys):
    ex.check_rms_norm(lambda x, scale, eps: None)
    ex.check_budget_rule(lambda *args: None)
    assert capsys.readouterr().out.count("not answered yet") == 2


# --- notebook 05 -----------------------------------------------------------------------------------------


def _confidence_controller():
    from anee_lite.adaptive.controllers import make_controller
    from anee_lite.lens import LogitLens

    model = UnrolledModel(random_llama())
    return make_controller("confidence", LogitLens(model), exit_layers_allowed=[1, 2])


def test_confidence_score_right_and_wrong(capsys):
    controller = _confidence_controller()
    ex.check_confidence_score(lambda logits: logits.softmax(-1).max(-1).values, controller)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="softmax"):
        ex.check_confidence_score(lambda logits: logits.max(-1).values, controller)
    with pytest.raises(ExerciseError, match="argmax"):
        ex.check_confidence_score(lambda logits: logits.argmax(-1), controller)
    with pytest.raises(ExerciseError, match="shape"):
        ex.check_confidence_score(lambda logits: logits.softmax(-1), controller)
    with pytest.raises(ExerciseError, match="softmax over the last"):
        ex.check_confidence_score(lambda logits: logits.softmax(-1).topk(2).values[..., 1], controller)
    ex.check_confidence_score(lambda logits: None, controller)
    assert "not answered yet" in capsys.readouterr().out


def bisect_lower(k, n, delta):
    if k == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        p = (lo + hi) / 2
        tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        lo, hi = (p, hi) if tail < delta else (lo, p)
    return lo


def test_clopper_pearson_lower_right_and_wrong(capsys):
    ex.check_clopper_pearson_lower(bisect_lower)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="k/n"):
        ex.check_clopper_pearson_lower(lambda k, n, d: k / n)
    with pytest.raises(ExerciseError, match="two-sided"):
        ex.check_clopper_pearson_lower(lambda k, n, d: bisect_lower(k, n, d / 2))
    with pytest.raises(ExerciseError, match="Beta quantile"):
        ex.check_clopper_pearson_lower(lambda k, n, d: max(0.0, k / n - 0.01))
    with pytest.raises(ExerciseError, match="raised"):
        ex.check_clopper_pearson_lower(lambda k, n, d: k / 0)
    ex.check_clopper_pearson_lower(None)
    assert "not answered yet" in capsys.readouterr().out


def pareto_by_hand(points):
    front, best = [], -1.0
    for c, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((c, a))
            best = a
    return front


def test_pareto_front_right_and_wrong(capsys):
    ex.check_pareto_front(pareto_by_hand)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="kept all"):
        ex.check_pareto_front(lambda pts: sorted(pts))
    with pytest.raises(ExerciseError, match="wrong order"):
        ex.check_pareto_front(lambda pts: pareto_by_hand(pts)[::-1])
    def plus_one_beaten(pts):
        front = pareto_by_hand(pts)
        return sorted(front + [next(p for p in pts if any(q[0] <= p[0] and q[1] > p[1] for q in pts))])

    with pytest.raises(ExerciseError, match="agrees more"):
        ex.check_pareto_front(plus_one_beaten)
    with pytest.raises(ExerciseError, match="same agreement"):  # a tie in agreement kept at the higher cost
        ex.check_pareto_front(lambda pts: [(c, a) for c, a in sorted(pts, key=lambda p: (p[0], -p[1]))
                                           if a >= max(q[1] for q in pts if q[0] <= c)])
    with pytest.raises(ExerciseError, match="missing"):  # forgets the cheapest point
        ex.check_pareto_front(lambda pts: pareto_by_hand(pts)[1:])
    with pytest.raises(ExerciseError, match="pairs"):
        ex.check_pareto_front(lambda pts: 3)
    ex.check_pareto_front(None)
    assert "not answered yet" in capsys.readouterr().out


# --- wrong kinds of answers: a one-line ExerciseError from the checker, never a trace from inside it -----------


def _boom(*args):
    raise RuntimeError("boom")


WRONG_NUMBERS = [torch.zeros(3), math.nan, "7", [1, 2], True]


@pytest.mark.parametrize("answer", WRONG_NUMBERS + [_boom])
def test_number_returning_exercises_refuse_wrong_kinds_of_answers(answer):
    model = UnrolledModel(random_llama(n_layers=3))
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(0))
    fn = answer if callable(answer) else (lambda *args: answer)
    for check in (lambda: ex.check_budget_rule(fn), lambda: ex.check_kv_owed(fn, model, ids),
                  lambda: ex.check_perplexity(fn)):
        with pytest.raises(ExerciseError):
            check()


@pytest.mark.parametrize("answer", WRONG_NUMBERS)
def test_number_answers_refuse_wrong_kinds(answer):
    dims = UnrolledModel(random_gpt2()).dims
    for check in (lambda: ex.check_unembed_flops(answer, dims), lambda: ex.check_break_even_layer(answer, dims, 16),
                  lambda: ex.check_first_stable_layer(lambda ranks: answer)):
        with pytest.raises(ExerciseError):
            check()


def test_a_one_element_tensor_still_counts_as_a_number(capsys):
    dims = UnrolledModel(random_gpt2()).dims
    ex.check_unembed_flops(torch.tensor(2 * dims.d_model * dims.d_vocab), dims)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", [n for n in ex.__all__ if n.startswith("check_")])
def test_every_check_of_the_series_follows_the_one_convention(name, capsys):
    """Every check takes the answer first and, for the template's None, says 'not answered yet' and returns None."""
    import inspect

    check = getattr(ex, name)
    others = [None] * (len(inspect.signature(check).parameters) - 1)  # never read: the answer is missing
    assert check(None, *others) is None
    assert capsys.readouterr().out.endswith("not answered yet (replace None with your answer and run the cell again)\n")
    assert check.__module__.startswith("anee_lite.notebook.exercises.")


# --- notebook 01: the whole block and the whole model ---------------------------------------------------


def reference_block(model):
    """The notebook's solution: a block written from the weights, for either architecture."""
    arch, dims = model.arch, model.dims

    def block(layer, x):
        blk, (B, T, _) = arch.blocks[layer], x.shape
        H, K, D = dims.n_heads, dims.n_kv_heads, dims.d_head
        h = arch.norm(x, blk.ln1_w, blk.ln1_b)
        q = (h @ blk.W_Q + (0 if blk.b_Q is None else blk.b_Q)).view(B, T, H, D).transpose(1, 2)
        k = (h @ blk.W_K + (0 if blk.b_K is None else blk.b_K)).view(B, T, K, D).transpose(1, 2)
        v = (h @ blk.W_V + (0 if blk.b_V is None else blk.b_V)).view(B, T, K, D).transpose(1, 2)
        pos = arch.position_info(torch.arange(T)[None])
        q, k = arch.rotate(q, pos), arch.rotate(k, pos)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != K)  # [B, H, T, D]
        mid = x + z.transpose(1, 2).reshape(B, T, H * D) @ blk.W_O + (0 if blk.b_O is None else blk.b_O)
        h2 = arch.norm(mid, blk.ln2_w, blk.ln2_b)
        hidden = arch.mlp_hidden(layer, mid)  # the MLP written out in the notebook; the library's here
        assert torch.allclose(hidden, arch.mlp_activation(h2 @ blk.W_mlp_in + (0 if blk.b_mlp_in is None
                                                                            else blk.b_mlp_in)), atol=1e-4)
        return mid + hidden @ blk.W_out + (0 if blk.b_out is None else blk.b_out)

    return block


@pytest.mark.parametrize("make", [lambda: random_gpt2(3), lambda: random_llama(n_layers=3)])
def test_whole_block_and_model_right_and_wrong(make, capsys):
    model = UnrolledModel(make())
    block = reference_block(model)
    ex.check_block(block, model)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="what the block adds"):
        ex.check_block(lambda layer, x: block(layer, x) - x, model)
    with pytest.raises(ExerciseError, match="wrong values|first token"):
        ex.check_block(lambda layer, x: block(layer, x.flip(1)).flip(1), model)  # tokens in the wrong order

    def logits(ids):
        x = model.arch.embed(ids, torch.arange(ids.shape[1])[None])
        for layer in range(model.dims.n_layers):
            x = block(layer, x)
        return model.arch.unembed(model.arch.final_norm(x))

    ex.check_logits(logits, model)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="final norm is missing"):
        ex.check_logits(lambda ids: model.forward(ids, return_resid=True).resid_stack()[-1] @ model.arch.W_U, model)
    with pytest.raises(ExerciseError, match="wrong logits"):  # one block short
        ex.check_logits(lambda ids: model.forward(ids, exit_layers=model.dims.n_layers - 1).logits, model)


def test_patch_hook_right_and_wrong(capsys):
    model = UnrolledModel(random_llama(n_layers=3, seed=4))

    def right(clean, position):
        def hook(t, name):
            t = t.clone()
            t[:, position] = clean[:, position]
            return t
        return hook

    ex.check_patch_hook(right, model)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="every position"):
        ex.check_patch_hook(lambda clean, position: (lambda t, name: clean), model)

    def in_place_without_return(clean, position):
        def hook(t, name):
            t.clone()[:, position] = clean[:, position]  # edits a copy it then drops

        return hook

    with pytest.raises(ExerciseError, match="unchanged"):
        ex.check_patch_hook(in_place_without_return, model)
    with pytest.raises(ExerciseError, match="position"):
        ex.check_patch_hook(lambda clean, position: right(clean, position - 1), model)
    with pytest.raises(ExerciseError, match="return a function"):
        ex.check_patch_hook(lambda clean, position: 3, model)
