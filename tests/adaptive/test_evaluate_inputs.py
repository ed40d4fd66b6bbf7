"""evaluate() refuses wrong types with errors naming the parameter, before any decoding."""

import pytest
import torch
from conftest import VOCAB, CharTokenizer

from anee_lite import ANEEWrapper, UnrolledModel
from anee_lite.adaptive.evaluate import evaluate


@pytest.mark.parametrize("kwargs,error,match", [
    ({"max_tokens": 2.5}, TypeError, "max_tokens must be an integer"),
    ({"max_tokens": "8"}, TypeError, "max_tokens must be an integer"),
    ({"max_tokens": 1}, ValueError, "max_tokens must be >= 2"),
    ({"chunk": 2.0}, TypeError, "chunk must be an integer"),
    ({"chunk": 1}, ValueError, "chunk must be >= 2"),
    ({"chunk": 10**6}, ValueError, "chunk must be at most"),
    ({"text": b"some bytes of text"}, TypeError, r"text must be a str, got bytes: decode it first"),
    ({"text": None}, TypeError, "text must be a str"),
    ({"text": "  "}, ValueError, "text must be a non-empty"),
    ({"calibration_text": b"bytes"}, TypeError, "calibration_text must be a str"),
    ({"calibration_text": 3}, TypeError, "calibration_text must be a str or None"),
    ({"controller": 3}, TypeError, "controller must be an ExitController or a controller name"),
    ({"controller": "bogus"}, ValueError, "controller must be one of"),
    ({"target_agreement": float("nan")}, ValueError, "target_agreement"),
    ({"target_agreement": "0.9"}, TypeError, "target_agreement"),
    ({"model_name": 7}, TypeError, "model_name must be a str"),
    ({"tokenizer": None}, TypeError, "tokenizer must be"),
    ({"delta": 0.0}, ValueError, r"delta must be in \(0, 1\)"),  # refused even with no calibration_text
    ({"delta": float("nan")}, ValueError, "delta"),
    ({"delta": "0.1"}, TypeError, "delta"),
    ({"lens": "tunned"}, ValueError, "lens must be one of"),  # refused even though the controller is built here
])
def test_bad_arguments_are_refused(llama4, kwargs, error, match):
    args = {"model": llama4, "tokenizer": CharTokenizer(), "text": "hello world, " * 4, "controller": "static",
            "max_tokens": 12} | kwargs
    with pytest.raises(error, match=match):
        evaluate(**args)


def test_a_wrapper_instead_of_the_unrolled_model_gets_a_hint(llama4_hf):
    wrapper = ANEEWrapper(hf_model=llama4_hf)
    with pytest.raises(TypeError, match=r"model must be an anee_lite.UnrolledModel.*\(pass wrapper.model\)"):
        evaluate(wrapper, CharTokenizer(), "hello world", "static")
    with pytest.raises(TypeError, match="model must be an anee_lite.UnrolledModel"):
        evaluate(llama4_hf, CharTokenizer(), "hello world", "static")


def test_integer_like_values_are_accepted(llama4):
    import numpy as np

    result = evaluate(llama4, CharTokenizer(), "hello world, " * 4, "static", max_tokens=np.int64(12), chunk=6)
    assert result.tokens == 12


def test_quality_vs_budget_takes_the_wrapper_or_its_unrolled_model(llama4_hf):
    from anee_lite.adaptive import quality_vs_budget

    wrapper = ANEEWrapper(hf_model=llama4_hf)
    ids = torch.randint(2, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    budgets = [1.0, 0.5, 0.05]
    assert quality_vs_budget(wrapper.model, ids, budgets) == quality_vs_budget(wrapper, ids, budgets)
    with pytest.raises(TypeError, match="model must be an ANEEWrapper or an UnrolledModel, got LlamaForCausalLM"):
        quality_vs_budget(llama4_hf, ids, budgets)


@pytest.mark.parametrize("budgets,error,match", [
    ([], ValueError, "at least one energy budget"),
    ("0.5", TypeError, "budgets must be a list"),
    (0.5, TypeError, "budgets must be a list"),
    ([1.0, 1.5], ValueError, "energy_budget"),
    ([float("nan")], ValueError, "energy_budget"),
])
def test_quality_vs_budget_refuses_bad_budgets_before_running(llama4, monkeypatch, budgets, error, match):
    from anee_lite.adaptive import quality_vs_budget

    monkeypatch.setattr(UnrolledModel, "forward", lambda *a, **k: pytest.fail("ran the model before checking"))
    with pytest.raises(error, match=match):
        quality_vs_budget(llama4, torch.ones(1, 4, dtype=torch.long), budgets)
