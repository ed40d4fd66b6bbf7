"""``kv_fill="catch_up"``: exited tokens' skipped layers run later, so every key and value is the full model's.

The reference is the full-depth forward with the residual stream recorded: under catch-up a token
that exits after ``e`` layers must output exactly the logits of the full model's residual after
layer ``e``, whatever the other tokens did, and a token that runs every layer must output the full
model's logits. Nothing else in the library computes that, so these tests can fail.
"""

import itertools

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.core.cache import CONTROLLER_KV_FILL, KV_FILLS, catch_up_rows, resolve_kv_fill

SMALL_MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=6, n_positions=128),
    "llama": lambda: random_llama(n_layers=5),
}

SCHEDULES = {
    "one-at-a-time": [1] * 14,
    "prefill-then-1": [5] + [1] * 9,
    "mixed": [1, 3, 1, 2, 1, 3, 2, 1],
}


@pytest.fixture(scope="module", params=sorted(SMALL_MODELS))
def small_model(request):
    return UnrolledModel(SMALL_MODELS[request.param]())


def random_case(model, batch=2, tokens=14, pad=(0, 4), seed=0, low=0):
    """Random ids, a left-padding mask (row b has pad[b] padding tokens) and per-token exit layers in [low, n_layers]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.dims.d_vocab, (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    for b, n in enumerate(pad[:batch]):
        mask[b, :n] = 0
    exits = torch.randint(low, model.dims.n_layers + 1, (batch, tokens), generator=g)
    return ids, mask, exits


def logits_at_exits(model, ids, mask, exits):
    """[B, T, d_vocab]: the full model's residual after ``exits[b, t]`` layers, unembedded (the definition)."""
    stack = model(ids, mask, return_resid=True).resid_stack()  # [n_layers + 1, B, T, d_model]
    at_exit = stack.gather(0, exits[None, ..., None].expand(1, *exits.shape, stack.shape[-1]))[0]  # [B, T, d_model]
    return model.logits_from_resid(at_exit)


def decode(model, ids, mask, exits, chunks):
    """Feed the tokens in chunks of the given sizes through one catch-up cache; concatenate the logits."""
    logits, cache, start, caught_up = [], None, 0, 0
    for size in chunks:
        end = start + size
        out = model(ids[:, start:end], mask[:, :end], exit_layers=exits[:, start:end], past_key_values=cache,
                    use_cache=True, kv_fill="catch_up")
        logits.append(out.logits)
        cache, start = out.past_key_values, end
        caught_up += out.stats.kv_caught_up
        assert out.stats.kv_propagated == 0  # nothing comes from a frozen residual
    assert start == ids.shape[1]
    assert caught_up == cache.caught_up
    return torch.cat(logits, dim=1), cache


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("pad", [(0, 0), (0, 4)], ids=["no-padding", "left-padding"])
def test_every_token_outputs_the_full_models_residual_at_its_exit(small_model, schedule, pad):
    ids, mask, exits = random_case(small_model, pad=pad, seed=len(SCHEDULES[schedule]), tokens=sum(SCHEDULES[schedule]))
    got, cache = decode(small_model, ids, mask, exits, SCHEDULES[schedule])
    expected = logits_at_exits(small_model, ids, mask, exits)
    real = mask.bool()  # padding positions have no meaning of their own
    assert (got - expected)[real].abs().max() <= 1e-4
    assert len(cache) == ids.shape[1]


def test_catch_up_differs_from_propagation_where_propagation_is_approximate(small_model):
    """The check above has teeth: with propagation, full-depth tokens after an exit do not get the full logits."""
    ids, mask, exits = random_case(small_model, pad=(0, 0), low=1)
    exits[:, ::2] = small_model.dims.n_layers  # every second token full depth, the others exit somewhere
    exits[:, 1::2] = 1
    expected = logits_at_exits(small_model, ids, mask, exits)
    caught, _ = decode(small_model, ids, mask, exits, [1] * ids.shape[1])
    propagated = small_model(ids, mask, exit_layers=exits).logits
    full_after_exit = exits == small_model.dims.n_layers
    full_after_exit[:, 0] = False
    assert (caught - expected)[full_after_exit].abs().max() <= 1e-4
    assert (propagated - expected)[full_after_exit].abs().max() > 1e-2


def test_a_full_depth_token_sees_the_full_models_cache(small_model):
    """After any exits, a token that runs every layer gets the full model's logits, and the cache its keys."""
    ids, mask, exits = random_case(small_model, pad=(0, 3), seed=5)
    exits[:, -1] = small_model.dims.n_layers
    got, cache = decode(small_model, ids, mask, exits, [4] + [1] * 10)
    full = small_model(ids, mask, use_cache=True)
    real = mask.bool()
    assert (got[:, -1] - full.logits[:, -1])[real[:, -1]].abs().max() <= 1e-4
    for layer in range(small_model.dims.n_layers):  # every entry filled, and equal to the full model's
        assert cache.layer_length(layer) == ids.shape[1]
        keys = cache.keys[layer].transpose(1, 2)[real]  # [n_real, K, D]
        assert (keys - full.past_key_values.keys[layer].transpose(1, 2)[real]).abs().max() <= 1e-4
    assert cache.lagging is None


def test_lagging_tokens_wait_until_a_later_token_runs_the_layer(small_model):
    """Lazy, like propagation: a static exit never runs the layers nobody reaches, and counts what it ran."""
    ids, _, _ = random_case(small_model, pad=(0, 0))
    n = small_model.dims.n_layers
    out = small_model(ids[:, :6], exit_layers=2, use_cache=True, kv_fill="catch_up")
    cache = out.past_key_values
    assert out.stats.kv_caught_up == 0 and cache.layer_length(2) == 0 and cache.lagging.shape[1] == 6
    out = small_model(ids[:, 6:7], exit_layers=n, past_key_values=cache, use_cache=True, kv_fill="catch_up")
    assert out.stats.kv_caught_up == 2 * 6 * (n - 2)  # 2 rows x 6 tokens x the layers they skipped
    assert cache.layer_length(n - 1) == 7 and cache.lagging is None


def test_exit_in_the_same_call_runs_on_for_the_later_tokens(small_model):
    """Without a cache, an exited token still runs to the call's deepest layer (its keys feed later tokens)."""
    ids, mask, exits = random_case(small_model, pad=(0, 2), seed=2)
    exits[:, -1] = small_model.dims.n_layers
    out = small_model(ids, mask, exit_layers=exits, kv_fill="catch_up")
    expected = logits_at_exits(small_model, ids, mask, exits)
    assert (out.logits - expected)[mask.bool()].abs().max() <= 1e-4
    assert out.stats.kv_caught_up == int((small_model.dims.n_layers - exits).sum())


def test_controller_exits_under_catch_up_are_the_full_models_exits(small_model):
    """A controller decides exits on the fly; outputs equal the full model's residual at the layer it chose."""
    g = torch.Generator().manual_seed(3)
    T = 9
    stop_at = torch.randint(1, small_model.dims.n_layers + 1, (1, T), generator=g)
    step = {"t": 0}

    def controller(layer, resid, active):
        t = step["t"]
        return (stop_at[:, t:t + resid.shape[1]] == layer).expand_as(active)

    ids = torch.randint(0, VOCAB, (1, T), generator=g)
    cache, logits = None, []
    for t in range(T):
        step["t"] = t
        out = small_model(ids[:, t:t + 1], controller=controller, past_key_values=cache, use_cache=True,
                          kv_fill="catch_up")
        cache = out.past_key_values
        logits.append(out.logits)
    expected = logits_at_exits(small_model, ids, torch.ones_like(ids), stop_at)
    assert (torch.cat(logits, dim=1) - expected).abs().max() <= 1e-4


def test_skipped_layers_are_never_caught_up(small_model):
    """A skipped layer is the identity for everyone; catch-up runs only the layers that run."""
    ids, _, exits = random_case(small_model, pad=(0, 0), seed=4)
    exits[:, -1] = small_model.dims.n_layers
    skip = [1]
    logits, cache = [], None
    for t in range(ids.shape[1]):
        out = small_model(ids[:, t:t + 1], exit_layers=exits[:, t:t + 1], past_key_values=cache, use_cache=True,
                          kv_fill="catch_up", skip_layers=skip)
        cache = out.past_key_values
        logits.append(out.logits)
    stack = small_model(ids, return_resid=True, skip_layers=skip).resid_stack()  # [L + 1, B, T, d_model]
    at_exit = stack.gather(0, exits[None, ..., None].expand(1, *exits.shape, stack.shape[-1]))[0]
    assert (torch.cat(logits, dim=1) - small_model.logits_from_resid(at_exit)).abs().max() <= 1e-4
    assert cache.layer_length(1) == 0


def test_truncate_then_continue_under_catch_up(small_model):
    """Rolling back rejected tokens keeps the earlier tokens' catch-up state; continuing stays exact."""
    ids, mask, exits = random_case(small_model, pad=(0, 0), seed=6)
    cache = None
    for t in range(10):
        cache = small_model(ids[:, t:t + 1], exit_layers=exits[:, t:t + 1], past_key_values=cache,
                            use_cache=True, kv_fill="catch_up").past_key_values
    wrong = torch.randint(0, small_model.dims.d_vocab, (2, 3), generator=torch.Generator().manual_seed(9))
    small_model(wrong, exit_layers=small_model.dims.n_layers, past_key_values=cache, use_cache=True,
                kv_fill="catch_up")
    cache.truncate(10)
    got = []
    for t in range(10, ids.shape[1]):
        out = small_model(ids[:, t:t + 1], exit_layers=exits[:, t:t + 1], past_key_values=cache, use_cache=True,
                          kv_fill="catch_up")
        got.append(out.logits)
    expected = logits_at_exits(small_model, ids, mask, exits)[:, 10:]
    assert (torch.cat(got, dim=1) - expected).abs().max() <= 1e-4


def test_a_failed_call_leaves_the_catch_up_cache_as_it_was(small_model):
    ids, mask, exits = random_case(small_model, pad=(0, 0), seed=7)
    cache = small_model(ids[:, :6], exit_layers=1, use_cache=True, kv_fill="catch_up").past_key_values
    before = ([cache.layer_length(l) for l in range(small_model.dims.n_layers)], cache.lagging, cache.caught_up)

    def broken(layer, resid, active):
        if layer == small_model.dims.n_layers - 1:
            raise KeyboardInterrupt
        return torch.zeros_like(active)

    with pytest.raises(KeyboardInterrupt):
        small_model(ids[:, 6:7], controller=broken, past_key_values=cache, use_cache=True, kv_fill="catch_up")
    assert [cache.layer_length(l) for l in range(small_model.dims.n_layers)] == before[0]
    assert cache.lagging is before[1] and cache.caught_up == before[2]
    got = small_model(ids[:, 6:], exit_layers=exits[:, 6:], past_key_values=cache, use_cache=True,
                      kv_fill="catch_up").logits
    exits6 = exits.clone()
    exits6[:, :6] = 1
    assert (got - logits_at_exits(small_model, ids, mask, exits6)[:, 6:]).abs().max() <= 1e-4


# --- arguments -----------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(bad=st.one_of(st.text(max_size=12).filter(lambda s: s not in KV_FILLS), st.integers(), st.none(),
                     st.booleans()))
def test_kv_fill_outside_the_choices_is_refused(bad):
    model = _llama()
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        model(torch.zeros(1, 2, dtype=torch.long), kv_fill=bad)


def test_a_cache_continues_only_under_its_own_kv_fill():
    model = _llama()
    ids = torch.zeros(1, 3, dtype=torch.long)
    cache = model(ids, use_cache=True, kv_fill="catch_up").past_key_values
    with pytest.raises(ValueError, match="kv_fill='catch_up'.*kv_fill='propagate'"):
        model(ids[:, :1], past_key_values=cache)
    cache = model(ids, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="kv_fill='propagate'.*kv_fill='catch_up'"):
        model(ids[:, :1], past_key_values=cache, kv_fill="catch_up")


@pytest.mark.parametrize("option", [{"return_resid": True}, {"return_patterns": True}, {"return_mlp_hidden": True},
                                    {"return_linear_inputs": True},
                                    {"hooks": {"blocks.0.hook_resid_post": lambda x, name: None}}])
def test_catch_up_refuses_hooks_and_recordings(option):
    with pytest.raises(ValueError, match="kv_fill='catch_up'.*takes no hooks"):
        _llama()(torch.zeros(1, 2, dtype=torch.long), kv_fill="catch_up", **option)


_MODELS = {}


def _llama():
    if "llama" not in _MODELS:
        _MODELS["llama"] = UnrolledModel(random_llama(n_layers=3))
    return _MODELS["llama"]


# --- generation: the user's path --------------------------------------------------------------------------------


def test_generation_under_catch_up_emits_the_full_models_prediction_at_each_exit(small_model):
    """Each generated token is the argmax of the full model's residual, on the generated prefix, at its exit."""
    from anee_lite import greedy_generate
    from anee_lite.cost import generation_report
    from anee_lite.cost.simulator import plan_from_generation

    n = small_model.dims.n_layers
    plan = iter([n, 1, 2, n, 1, 1, n - 1, n])  # prompt pass, then 7 decoding steps
    state = {}

    def controller(layer, resid, active):
        if layer == 1:
            state["depth"] = next(plan)
        return torch.full_like(active, layer == state["depth"])

    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(1))
    result = greedy_generate(small_model, ids, max_new_tokens=8, controller=controller, kv_fill="catch_up")
    exits = torch.tensor([[n] * 4 + [int(layers[0]) for layers in result.layers_per_token]])  # [1, 5 + 8]
    prefix = result.sequences[:, :-1]  # the token at position p was predicted from positions <= p
    expected = logits_at_exits(small_model, prefix, torch.ones_like(prefix), exits[:, :prefix.shape[1]])
    assert result.new_tokens[0].tolist() == expected[0, 4:].argmax(-1).tolist()
    assert result.kv_caught_up > 0 and result.kv_propagated == 0
    assert len(generation_report(result, small_model.dims)) == 8
    # The simulator's steps run what the cache counted: each decoding pass to its depth, the lagging tokens beside it.
    plan = plan_from_generation(result)
    assert [s.layers for s in plan] == result.depth_per_step[1:] == [int(l[0]) for l in result.layers_per_token[1:]]
    assert [sum(s.caught_up) for s in plan] == result.kv_caught_up_per_step[1:]
    assert sum(plan[0].caught_up) == 0 < sum(plan[1].caught_up)  # the pass to depth 2 catches up the token that left at 1


@settings(max_examples=40, deadline=None)
@given(depths=st.lists(st.integers(0, 6), min_size=1, max_size=12), first=st.integers(1, 4))
def test_catch_up_rows_runs_each_token_to_the_deepest_later_pass(depths, first):
    """Over a generation, a token is caught up from its own pass's depth to the deepest pass after it: no more, no less."""
    rows = catch_up_rows(depths, first_tokens=first)
    assert [len(r) for r in rows] == depths
    tokens = [(0, first)] + [(t, 1) for t in range(1, len(depths))]  # (the pass that brought them, how many)
    owed = sum(n * (max(depths[t:]) - depths[t]) for t, n in tokens)
    assert sum(map(sum, rows)) == owed
    for t, r in enumerate(rows):  # at a deeper layer, never more lagging tokens: they stand where a pass left them
        assert all(a <= b for a, b in itertools.pairwise(r)) and max(r, default=0) <= (first + t - 1 if t else 0)


def test_catch_up_rows_by_hand():
    assert catch_up_rows([4, 4, 1, 2, 4, 1, 1, 3, 4], first_tokens=5) == [
        (0, 0, 0, 0), (0, 0, 0, 0), (0,), (0, 1), (0, 0, 2, 2), (0,), (0,), (0, 2, 2), (0, 0, 0, 3)]
    with pytest.raises(ValueError, match=r"depths\[1\]"):
        catch_up_rows([2, -1])
    with pytest.raises(ValueError, match="first_tokens"):
        catch_up_rows([2], first_tokens=0)


def test_catch_up_rows_counts_what_the_cache_ran_in_teacher_forced_decoding(small_model):
    """Token by token from an empty cache (calibration's path), every step's caught-up blocks are the schedule's."""
    n = small_model.dims.n_layers
    depths = [n, 1, 2, 1, 1, n, 0, 2, n - 1, 1, n]
    ids = torch.randint(0, small_model.dims.d_vocab, (1, len(depths)), generator=torch.Generator().manual_seed(3))
    cache, counted = None, []
    for t, depth in enumerate(depths):
        out = small_model.forward(ids[:, t:t + 1], exit_layers=torch.tensor([[depth]]), controller=None,
                                  past_key_values=cache, use_cache=True, kv_fill="catch_up")
        cache = out.past_key_values
        counted.append(out.stats.kv_caught_up)
    assert [sum(r) for r in catch_up_rows(depths)] == counted



def test_the_default_fill_is_catch_up_with_a_controller_and_propagation_without():
    assert CONTROLLER_KV_FILL == "catch_up"
    assert resolve_kv_fill(None, controller=lambda *a: None) == "catch_up"
    assert resolve_kv_fill(None, controller=None) == "propagate"
    for fill in KV_FILLS:  # an explicit choice always wins
        assert resolve_kv_fill(fill, controller=lambda *a: None) == resolve_kv_fill(fill, None) == fill
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        resolve_kv_fill("eager", None)


def test_greedy_generate_with_a_controller_catches_up_by_default(small_model):
    from anee_lite import greedy_generate

    n = small_model.dims.n_layers
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(2))

    def run(**kwargs):
        plan = iter([n, 1, n, 2, n, 1])

        def controller(layer, resid, active):
            if layer == 1:
                controller.depth = next(plan)
            return torch.full_like(active, layer == controller.depth)

        return greedy_generate(small_model, ids, max_new_tokens=6, controller=controller, **kwargs)

    default, caught, propagated = run(), run(kv_fill="catch_up"), run(kv_fill="propagate")
    assert torch.equal(default.sequences, caught.sequences) and default.kv_caught_up == caught.kv_caught_up > 0
    assert default.kv_propagated == 0 and propagated.kv_propagated > 0 and propagated.kv_caught_up == 0
    static = greedy_generate(small_model, ids, max_new_tokens=4, exit_layers=2)
    assert static.kv_caught_up == 0  # no controller: propagation, and a static exit needs no fill at all
