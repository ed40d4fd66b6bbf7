"""Property-based argument checks: any value is either accepted with the documented result, or refused
with a ValueError/TypeError that names the parameter."""

import math
import re

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anee_lite import ANEEConfig, ANEEWrapper, UnrolledModel, budget_exit_layer, greedy_generate

N_LAYERS = 4
N_CTX = 32
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GPT2 = UnrolledModel(random_gpt2(n_layer=N_LAYERS, n_positions=N_CTX, n_embd=32, n_head=2))
LLAMA = UnrolledModel(random_llama(n_layers=N_LAYERS, d_model=32))
WRAPPER = ANEEWrapper(hf_model=random_gpt2(n_layer=N_LAYERS, n_positions=N_CTX, n_embd=32, n_head=2, seed=3))

# Anything a careless caller might pass for a number.
ANY_SCALAR = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-10**20, max_value=10**20),
    st.booleans(), st.none(), st.text(max_size=3), st.just(b"1"), st.just([1]), st.just(torch.tensor(0.5)),
)


def refused(excinfo, name: str) -> None:
    assert isinstance(excinfo, (ValueError, TypeError)), f"{type(excinfo).__name__}: {excinfo}"
    assert re.search(rf"\b{name}\b", str(excinfo)), f"message does not name {name}: {excinfo}"


def seed_definition(n_layers, budget, min_layers, threshold):
    """The seed's rule written out: run layer l unless l >= min_layers and the remaining budget < threshold."""
    for layer in range(n_layers):
        if layer >= min_layers and max(0.0, budget - layer / n_layers) < threshold - 1e-9:
            return layer
    return n_layers


def is_real(x, low, high):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x) and low <= x <= high


def is_int(x, low, high):
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


@FAST
@given(budget=ANY_SCALAR, min_layers=ANY_SCALAR, threshold=ANY_SCALAR)
def test_budget_knobs(budget, min_layers, threshold):
    valid = {"energy_budget": is_real(budget, 0, 1), "min_layers": is_int(min_layers, 0, 12),
             "exit_budget_threshold": is_real(threshold, 0, 1)}
    try:
        n = budget_exit_layer(12, budget, min_layers, threshold)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions escape
        assert not all(valid.values())
        refused(exc, next(name for name, ok in valid.items() if not ok and name in str(exc)))
        return
    assert all(valid.values())
    assert n == seed_definition(12, budget, min_layers, threshold)


@FAST
@given(budget=ANY_SCALAR, min_layers=st.one_of(st.none(), ANY_SCALAR), threshold=st.one_of(st.none(), ANY_SCALAR))
def test_wrapper_call_budget_knobs(budget, min_layers, threshold):
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    try:
        out = WRAPPER(ids, energy_budget=budget, min_layers=min_layers, exit_budget_threshold=threshold)
    except Exception as exc:  # noqa: BLE001
        assert any(name in str(exc) for name in ("energy_budget", "min_layers", "exit_budget_threshold")), exc
        assert isinstance(exc, (ValueError, TypeError)), exc
        return
    cfg = WRAPPER.config
    expected = seed_definition(N_LAYERS, cfg.energy_budget if budget is None else budget,
                               cfg.min_layers if min_layers is None else min_layers,
                               cfg.exit_budget_threshold if threshold is None else threshold)
    assert out.stats.layers_executed == expected
    full = WRAPPER.model(ids, return_resid=True)
    assert torch.allclose(out.logits, WRAPPER.model.logits_from_resid(full.resid_stack()[expected]), atol=1e-5)


@FAST
@given(kwargs=st.fixed_dictionaries({}, optional={"energy_budget": ANY_SCALAR, "min_layers": ANY_SCALAR,
                                                   "exit_budget_threshold": ANY_SCALAR,
                                                   "device": st.one_of(st.sampled_from(["cpu", "cuda", "banana",
                                                                                         "cpu:0", "", "CPU"]),
                                                                       ANY_SCALAR)}))
def test_config(kwargs):
    try:
        cfg = ANEEConfig(**kwargs)
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, (ValueError, TypeError)), exc
        assert any(name in str(exc) for name in kwargs), exc
        return
    for name, value in kwargs.items():
        assert getattr(cfg, name) == value or (isinstance(value, int) and getattr(cfg, name) == float(value))


ID_DTYPES = [torch.long, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.float32]


def holds_the_vocabulary(dtype, d_vocab: int) -> bool:
    """Signed integers wide enough for every id: uint8 or a narrow int8 would wrap ids into other valid ones."""
    return not dtype.is_floating_point and dtype != torch.bool and dtype.is_signed \
        and torch.iinfo(dtype).max >= d_vocab - 1


@FAST
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=3), dtype=st.sampled_from(ID_DTYPES),
       low=st.integers(-3, VOCAB + 3), span=st.integers(0, VOCAB + 3), model=st.sampled_from([GPT2, LLAMA]))
def test_input_ids(shape, dtype, low, span, model):
    values = torch.randint(0, span + 1, shape) + low
    ids = values.to(dtype)
    try:
        out = model(ids)
    except Exception as exc:  # noqa: BLE001
        refused(exc, "input_ids")
        in_range = values.numel() == 0 or (int(values.min()) >= 0 and int(values.max()) < VOCAB
                                           and torch.equal(ids.long(), values))
        assert not (len(shape) == 2 and values.numel() > 0 and holds_the_vocabulary(dtype, VOCAB) and in_range)
        return
    assert len(shape) == 2 and ids.numel() > 0 and holds_the_vocabulary(dtype, VOCAB)
    assert torch.equal(out.logits, model(ids.long()).logits)


@FAST
@given(dtype=st.sampled_from([torch.long, torch.int32, torch.int16, torch.int8, torch.uint8]),
       d_vocab=st.integers(1, 100_000), value=st.integers(0, 127))
def test_input_ids_dtype_must_hold_the_vocabulary(dtype, d_vocab, value):
    """Whatever the values, a dtype that cannot hold every id of the vocabulary is refused by name."""
    from anee_lite.core.validation import check_input_ids

    ids = torch.tensor([[min(value, d_vocab - 1)]]).to(dtype)
    try:
        got = check_input_ids(ids, d_vocab)
    except TypeError as exc:
        refused(exc, "input_ids")
        assert not holds_the_vocabulary(dtype, d_vocab)
        return
    assert holds_the_vocabulary(dtype, d_vocab) and got.dtype == torch.long and int(got) == min(value, d_vocab - 1)


@FAST
@given(rows=st.lists(st.lists(st.sampled_from([0, 1, 1, 1, 2, -1]), min_size=4, max_size=4), min_size=1, max_size=3),
       dtype=st.sampled_from([torch.long, torch.int32, torch.bool, torch.float32]), extra_col=st.booleans())
def test_attention_mask(rows, dtype, extra_col):
    mask = torch.tensor(rows)
    if extra_col:
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
    ids = torch.randint(0, VOCAB, (len(rows), 4))
    typed = (mask != 0) if dtype == torch.bool else mask.to(dtype)
    try:
        out = LLAMA(ids, typed)
    except Exception as exc:  # noqa: BLE001
        refused(exc, "attention_mask")
        assert extra_col or not bool(((typed == 0) | (typed == 1)).all()) or not bool(typed.bool().any(1).all())
        return
    assert not extra_col and bool(((typed == 0) | (typed == 1)).all())  # float 0/1 too, as HF accepts
    assert bool(typed.bool().any(1).all())  # without a cache, a row with no real token is refused
    for b in range(len(rows)):  # a left-padded row gives the logits of its tokens alone
        n_pad = int((typed[b] == 0).long().cumprod(0).sum())
        if 0 < n_pad < 4 and bool(typed[b, n_pad:].bool().all()):
            alone = LLAMA(ids[b:b + 1, n_pad:]).logits[0]
            assert torch.allclose(out.logits[b, n_pad:], alone, atol=1e-5)


@FAST
@given(exits=st.one_of(ANY_SCALAR, st.lists(st.integers(-1, N_LAYERS + 1), min_size=6, max_size=6),
                       st.lists(st.integers(0, N_LAYERS), min_size=1, max_size=8)),
       as_dtype=st.sampled_from([torch.long, torch.int32, torch.float32, torch.bool]))
def test_exit_layers(exits, as_dtype):
    ids = torch.randint(0, VOCAB, (2, 3))
    if isinstance(exits, list):
        exits = torch.tensor(exits).to(as_dtype)
        exits = exits.view(2, 3) if exits.numel() == 6 else exits
    try:
        out = GPT2(ids, exit_layers=exits, return_resid=True)
    except Exception as exc:  # noqa: BLE001
        refused(exc, "exit_layers")
        return
    if isinstance(exits, torch.Tensor):
        assert exits.shape == (2, 3) and exits.dtype in (torch.long, torch.int32)
        assert torch.equal(out.stats.exit_layers, exits.long())
        assert 0 <= int(exits.min()) and int(exits.max()) <= N_LAYERS
    elif exits is None:  # documented: every layer
        assert torch.equal(out.logits, GPT2(ids).logits)
    else:
        assert is_int(exits, 0, N_LAYERS)
        full = GPT2(ids, return_resid=True)  # every token stops at one depth: the logit lens of the full run
        assert torch.allclose(out.logits, GPT2.logits_from_resid(full.resid_stack()[exits]), atol=1e-5)


@FAST
@given(max_new_tokens=ANY_SCALAR, prompt_len=st.integers(1, 6))
def test_generation_length(max_new_tokens, prompt_len):
    ids = torch.randint(2, VOCAB, (1, prompt_len))
    try:
        result = greedy_generate(GPT2, ids, max_new_tokens=max_new_tokens)
    except Exception as exc:  # noqa: BLE001
        refused(exc, "max_new_tokens")
        assert not is_int(max_new_tokens, 0, N_CTX - prompt_len)
        return
    assert is_int(max_new_tokens, 0, N_CTX - prompt_len)
    assert result.new_tokens.shape == (1, max_new_tokens)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=ANY_SCALAR, extra=st.integers(1, 4))
def test_cache_truncate(n, extra):
    ids = torch.randint(0, VOCAB, (1, 3 + extra))
    cache = GPT2(ids[:, :3], use_cache=True).past_key_values
    GPT2(ids[:, 3:], past_key_values=cache, use_cache=True)
    try:
        cache.truncate(n)
    except Exception as exc:  # noqa: BLE001
        refused(exc, "length")
        assert not is_int(n, 0, 3 + extra) and len(cache) == 3 + extra
        return
    assert is_int(n, 0, 3 + extra) and len(cache) == n


@pytest.mark.parametrize("model", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_properties_run_on_both_architectures(model):
    assert model.dims.n_layers == N_LAYERS


def test_generation_names_the_model_it_needs():
    """A wrapper passed where greedy_generate wants its UnrolledModel gets the same hint as everywhere else."""
    with pytest.raises(TypeError, match=r"model must be an anee_lite.UnrolledModel.*\(pass wrapper.model\)"):
        greedy_generate(WRAPPER, torch.tensor([[1, 2]]), max_new_tokens=1)
