"""Self-speculative decoding: the text equals full-depth cached greedy for every draft depth and length."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import ANEEConfig, ANEEWrapper, UnrolledModel, greedy_generate
from anee_lite.decoding.speculative import expected_speedup, expected_tokens_per_round, speculative_generate

LLAMA4 = UnrolledModel(random_llama(n_layers=4))
SMALL_MODELS = {
    "gpt2": lambda: random_gpt2(n_layer=5, n_positions=128, seed=3),
    "llama": lambda: random_llama(n_layers=4, seed=4),
}
PROMPTS = ["The history of the printing press begins in", "def fibonacci(n):\n    ",
           "In the beginning God created"]


@pytest.fixture(params=sorted(SMALL_MODELS), scope="module")
def small_model(request):
    return UnrolledModel(SMALL_MODELS[request.param]())


def prompt_ids(batch=1, tokens=6, seed=0, pad=(0, 3)):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, tokens), generator=g)
    mask = torch.ones_like(ids)
    for b, n in enumerate(pad[:batch]):
        mask[b, :n] = 0
    return ids, mask


class AlwaysWrongLens:
    """A draft that never agrees with anything sensible: the output must still be full-depth greedy."""

    def logits(self, layer, resid):
        logits = torch.zeros(*resid.shape[:-1], VOCAB)
        logits[..., 2] = 1.0
        return logits


# --- exactness ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("draft_tokens", [1, 3, 8])
def test_equals_full_depth_greedy_every_draft_depth(small_model, draft_tokens):
    ids, _ = prompt_ids()
    expected = greedy_generate(small_model, ids, max_new_tokens=24)
    for layers in range(1, small_model.dims.n_layers):
        got = greedy_generate(small_model, ids, max_new_tokens=24, draft_layers=layers, draft_tokens=draft_tokens)
        assert torch.equal(got.sequences, expected.sequences), (layers, draft_tokens)
        stats = got.speculative
        assert stats.emitted == 23  # the prefill emits the first token
        assert stats.rounds <= 23 and stats.accepted + stats.rounds == stats.emitted


@pytest.mark.slow
@pytest.mark.parametrize("draft_tokens", range(1, 9))
def test_equals_full_depth_greedy_full_grid(small_model, draft_tokens):
    for seed in range(3):
        ids, _ = prompt_ids(tokens=3 + seed, seed=seed)
        expected = greedy_generate(small_model, ids, max_new_tokens=30)
        for layers in range(1, small_model.dims.n_layers):
            got = greedy_generate(small_model, ids, max_new_tokens=30, draft_layers=layers,
                                  draft_tokens=draft_tokens)
            assert torch.equal(got.sequences, expected.sequences), (seed, layers, draft_tokens)


def test_a_draft_that_is_always_wrong_still_gives_the_full_text(small_model):
    ids, _ = prompt_ids()
    expected = greedy_generate(small_model, ids, max_new_tokens=15)
    got = speculative_generate(small_model, ids, max_new_tokens=15, draft_layers=1, draft_tokens=4,
                               draft_lens=AlwaysWrongLens())
    assert torch.equal(got.sequences, expected.sequences)
    stats = got.speculative
    # a round judges drafts up to the first mismatch; the last round drafts nothing (one token was left)
    assert stats.judged == stats.rounds - 1 + stats.accepted
    assert stats.accepted <= int((got.new_tokens == 2).sum())  # only where the full model also says 2


def test_batch_with_left_padding_equals_full_depth_greedy(small_model):
    ids, mask = prompt_ids(batch=2, tokens=8)
    expected = greedy_generate(small_model, ids, mask, max_new_tokens=20)
    for layers in (1, small_model.dims.n_layers - 1):
        got = greedy_generate(small_model, ids, mask, max_new_tokens=20, draft_layers=layers, draft_tokens=3)
        assert torch.equal(got.sequences, expected.sequences)


@pytest.mark.parametrize("batch", [1, 2])
def test_eos_stops_like_greedy(small_model, batch):
    ids, mask = prompt_ids(batch=batch, tokens=7)
    plain = greedy_generate(small_model, ids, mask, max_new_tokens=20)
    eos = int(plain.new_tokens[0, 5])  # a token the first row emits: it must stop there
    expected = greedy_generate(small_model, ids, mask, max_new_tokens=20, eos_token_id=eos, pad_token_id=VOCAB - 1)
    assert expected.sequences.shape[1] < plain.sequences.shape[1] or batch == 2
    for layers in range(1, small_model.dims.n_layers):
        for k in (1, 8):
            got = greedy_generate(small_model, ids, mask, max_new_tokens=20, eos_token_id=eos,
                                  pad_token_id=VOCAB - 1, draft_layers=layers, draft_tokens=k)
            assert torch.equal(got.sequences, expected.sequences), (layers, k)


def test_zero_new_tokens_and_one(small_model):
    ids, _ = prompt_ids()
    assert torch.equal(greedy_generate(small_model, ids, max_new_tokens=0, draft_layers=1, draft_tokens=2).sequences,
                       ids)
    one = greedy_generate(small_model, ids, max_new_tokens=1, draft_layers=1, draft_tokens=5)
    assert torch.equal(one.sequences, greedy_generate(small_model, ids, max_new_tokens=1).sequences)
    assert one.speculative.rounds == 0


def test_cache_after_a_run_holds_only_full_depth_entries(small_model):
    """Each round ends with every layer holding the same tokens, so nothing is ever filled from a frozen state."""
    ids, _ = prompt_ids()
    got = greedy_generate(small_model, ids, max_new_tokens=16, draft_layers=2, draft_tokens=4)
    assert got.kv_propagated == 0
    assert all(int(layers.min()) == small_model.dims.n_layers for layers in got.layers_per_token)


# --- statistics and the formula ---------------------------------------------------------------------------------


def test_statistics_are_consistent(small_model):
    ids, _ = prompt_ids()
    stats = greedy_generate(small_model, ids, max_new_tokens=30, draft_layers=1, draft_tokens=3).speculative
    assert stats.judged <= stats.drafted and stats.accepted <= stats.judged
    assert 1 <= stats.tokens_per_verify <= 4
    assert stats.tokens_per_verify == pytest.approx(1 + stats.accepted / stats.rounds)
    assert stats.draft_seconds > 0 and stats.verify_seconds > 0


def test_formula_matches_hand_values():
    assert expected_tokens_per_round(0.0, 4) == 1.0
    assert expected_tokens_per_round(1.0, 4) == 5.0
    assert expected_tokens_per_round(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    assert expected_speedup(0.5, 2, 0.25, 1.0) == pytest.approx(1.75 / 1.5)


# --- arguments ---------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(layers=st.one_of(st.integers(-5, 0), st.integers(4, 50)))
def test_draft_layers_out_of_range_is_refused(layers):
    model = LLAMA4
    ids, _ = prompt_ids()
    with pytest.raises(ValueError, match="draft_layers"):
        greedy_generate(model, ids, max_new_tokens=3, draft_layers=layers, draft_tokens=2)


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(-10, 0))
def test_draft_tokens_out_of_range_is_refused(tokens):
    model = LLAMA4
    ids, _ = prompt_ids()
    with pytest.raises(ValueError, match="draft_tokens"):
        greedy_generate(model, ids, max_new_tokens=3, draft_layers=2, draft_tokens=tokens)


@settings(max_examples=10, deadline=None)
@given(bad=st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.just(None).map(lambda _: [1])))
def test_draft_arguments_of_the_wrong_type_are_refused(bad):
    model = LLAMA4
    ids, _ = prompt_ids()
    with pytest.raises(TypeError, match="draft_layers"):
        greedy_generate(model, ids, max_new_tokens=3, draft_layers=bad, draft_tokens=2)
    with pytest.raises(TypeError, match="draft_tokens"):
        greedy_generate(model, ids, max_new_tokens=3, draft_layers=2, draft_tokens=bad)


def test_incompatible_options_are_refused(small_model):
    ids, _ = prompt_ids()
    with pytest.raises(ValueError, match="both draft_layers and draft_tokens"):
        greedy_generate(small_model, ids, max_new_tokens=3, draft_layers=1)
    with pytest.raises(ValueError, match="exit_layers"):
        greedy_generate(small_model, ids, max_new_tokens=3, draft_layers=1, draft_tokens=2, exit_layers=1)
    with pytest.raises(ValueError, match="draft_lens"):
        greedy_generate(small_model, ids, max_new_tokens=3, draft_layers=1, draft_tokens=2, draft_lens="tuned")
    with pytest.raises(TypeError, match="draft_lens"):
        greedy_generate(small_model, ids, max_new_tokens=3, draft_layers=1, draft_tokens=2, draft_lens=3)
    with pytest.raises(ValueError, match="at least 2 layers"):
        greedy_generate(UnrolledModel(random_llama(n_layers=1)), ids, max_new_tokens=3, draft_layers=1,
                        draft_tokens=2)


# --- SmolLM2 through the wrapper ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_wrapper(smollm2_hf):
    hf, tokenizer = smollm2_hf
    return ANEEWrapper(ANEEConfig(model_name="smollm2-135m"), hf_model=hf, tokenizer=tokenizer)


def full_depth(wrapper, prompt, n):
    return wrapper.generate(prompt=prompt, max_new_tokens=n, exit_budget_threshold=0.0, min_layers=0)


@pytest.mark.slow
def test_smollm2_text_is_unchanged_logit_and_tuned(smollm2_wrapper):
    expected = full_depth(smollm2_wrapper, PROMPTS[1], 12)
    for layers, k, lens in [(9, 3, "tuned"), (20, 8, "logit"), (27, 2, "tuned")]:
        got = smollm2_wrapper.generate(prompt=PROMPTS[1], max_new_tokens=12, draft_layers=layers, draft_tokens=k,
                                       draft_lens=lens)
        assert got == expected, (layers, k, lens)


@pytest.mark.slow
def test_smollm2_text_is_unchanged_every_draft_depth(smollm2_wrapper):
    for p, prompt in enumerate(PROMPTS):
        expected = full_depth(smollm2_wrapper, prompt, 16)
        for layers in range(1 + p, smollm2_wrapper.n_layers, 3):  # the three prompts cover every L from 1 to 29
            k = 1 + (layers + p) % 8
            got = smollm2_wrapper.generate(prompt=prompt, max_new_tokens=16, draft_layers=layers, draft_tokens=k)
            assert got == expected, (prompt, layers, k)


@pytest.mark.slow
def test_smollm2_tuned_lens_only_where_it_was_trained(smollm2_wrapper):
    with pytest.raises(ValueError, match="draft_layers"):
        smollm2_wrapper.generate(prompt=PROMPTS[0], max_new_tokens=2, draft_layers=10, draft_tokens=2,
                                 draft_lens="tuned")
    with pytest.raises(ValueError, match="draft_lens"):
        smollm2_wrapper.generate(prompt=PROMPTS[0], max_new_tokens=2, draft_layers=10, draft_tokens=2,
                                 draft_lens="exact")
    with pytest.raises(ValueError, match="energy_budget"):
        smollm2_wrapper.generate(prompt=PROMPTS[0], max_new_tokens=2, draft_layers=10, draft_tokens=2,
                                 energy_budget=0.5)


def test_tuned_lens_on_a_model_without_one_is_refused():
    hf = random_gpt2(n_layer=3)
    wrapper = ANEEWrapper(ANEEConfig(model_name="gpt2"), hf_model=hf, tokenizer=None)
    with pytest.raises(ValueError, match="tuned"):
        wrapper.draft_lens("tuned", 1)
