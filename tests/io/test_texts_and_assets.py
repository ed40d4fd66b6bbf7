"""Shipped texts and asset paths refuse bad arguments with errors naming the parameter."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite.io import EVAL_TEXTS, eval_ids, eval_text, lens_path, probe_path
from anee_lite.io.assets import is_smollm2


def char_ids(text):
    return {"input_ids": [ord(ch) % 100 for ch in text]}


def test_eval_ids_gives_exactly_the_tokens_asked_for():
    assert eval_ids(char_ids, "kjv_heldout", 7).shape == (1, 7)
    n = len(eval_text("kjv_heldout"))
    assert eval_ids(char_ids, "kjv_heldout", n).shape == (1, n)


@given(extra=st.integers(min_value=1, max_value=10**12))
@settings(max_examples=10, deadline=None)
def test_eval_ids_refuses_more_tokens_than_the_text_has(extra):
    # It used to return fewer tokens than asked for, without a word.
    n = len(eval_text("kjv_heldout"))
    with pytest.raises(ValueError, match=f"n_tokens must be at most {n}"):
        eval_ids(char_ids, "kjv_heldout", n + extra)


@pytest.mark.parametrize("tokenizer", [None, "gpt2"])
def test_eval_ids_names_a_tokenizer_that_is_not_one(tokenizer):
    with pytest.raises(TypeError, match="tokenizer must be"):
        eval_ids(tokenizer)


@pytest.mark.parametrize("name", [None, 3, ["kjv_heldout"], "../README"])
def test_eval_text_names_the_choices(name):
    with pytest.raises(ValueError, match=EVAL_TEXTS[0]):
        eval_text(name)


@pytest.mark.parametrize("model_name", [None, 3, "", "  "])
def test_asset_paths_refuse_a_missing_model_name(model_name):
    # None used to give a path to 'None_exit_probe.safetensors'.
    for path in (lens_path, probe_path):
        with pytest.raises(ValueError, match="model_name must be a non-empty str"):
            path(model_name=model_name)


@pytest.mark.parametrize("folder", [None, 3, b"data"])
def test_asset_paths_refuse_a_folder_that_is_not_a_path(folder):
    with pytest.raises(TypeError, match="folder must be a path"):
        lens_path(folder)


def test_is_smollm2_is_false_for_non_names():
    assert not is_smollm2(3) and not is_smollm2(None) and is_smollm2("HuggingFaceTB/SmolLM2-135M-Instruct")
