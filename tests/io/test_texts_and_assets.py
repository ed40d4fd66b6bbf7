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


def paragraphs(name):
    return {p.strip() for p in eval_text(name).split("\n\n") if p.strip()}


def test_text_roles_share_no_paragraph():
    # The lens and probe learn from "train", thresholds come from "calibration", numbers are reported on
    # "heldout": a paragraph in two roles would let training or calibration see what is measured.
    from anee_lite.io import TEXT_ROLES

    assert sorted(n for names in TEXT_ROLES.values() for n in names) == sorted(EVAL_TEXTS)
    roles = {role: set().union(*(paragraphs(n) for n in names)) for role, names in TEXT_ROLES.items()}
    for a, b in (("train", "calibration"), ("train", "heldout"), ("calibration", "heldout")):
        shared = roles[a] & roles[b]
        assert not shared, f"{a} and {b} share {len(shared)} paragraphs, e.g. {next(iter(shared))[:80]!r}"
    # and no long sentence either: a paragraph re-wrapped differently would slip past the check above
    def sentences(role):
        return {s.strip() for p in roles[role] for s in p.split(". ") if len(s.split()) >= 12}
    assert not sentences("train") & (sentences("calibration") | sentences("heldout"))


def test_calibration_and_heldout_texts_are_long_enough_to_calibrate_on():
    # Calibration needs >= 2,000 tokens; words are a lower bound on this tokenizer's tokens.
    for name in ("python_docs_calibration", "python_docs_heldout"):
        assert len(eval_text(name).split()) >= 2000, name
    assert len(eval_text("python_docs_train").split()) >= 10 * len(eval_text("python_docs_calibration").split())
