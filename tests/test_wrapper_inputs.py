"""The wrapper refuses knob mixes it would otherwise ignore, and odd inputs with errors naming the parameter."""

import pytest
import torch
from conftest import random_gpt2

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.adaptive.controllers import make_controller
from anee_lite.io.loading import load_pretrained
from anee_lite.lens import LogitLens


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_folder):
    hf, tok = load_pretrained(str(tiny_gpt2_folder))
    return ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)), hf_model=hf, tokenizer=tok)


@pytest.mark.parametrize("knob", [{"min_layers": 1}, {"exit_budget_threshold": 0.2}, {"energy_budget": 0.5}])
def test_generate_with_a_controller_refuses_budget_knobs(tiny, knob):
    controller = make_controller("confidence", LogitLens(tiny.model), 0.5)
    with pytest.raises(ValueError, match="do not apply with a controller"):
        tiny.generate(prompt="The quick", max_new_tokens=2, controller=controller, **knob)


def test_generate_with_a_controller_alone_still_works(tiny):
    controller = make_controller("confidence", LogitLens(tiny.model), 0.5)
    result = tiny.generate(prompt="The quick", max_new_tokens=2, controller=controller, return_result=True)
    assert result.new_tokens.shape == (1, 2)


@pytest.mark.parametrize("prompt,error", [(None, ValueError), (3, TypeError), ([], TypeError), (["ok", 5], TypeError),
                                          (b"bytes", TypeError), ("", ValueError)])
def test_bad_prompts_are_refused(tiny, prompt, error):
    with pytest.raises(error, match="prompt"):
        tiny.generate(prompt=prompt, max_new_tokens=1)


def test_generate_without_any_tokenizer_names_it():
    wrapper = ANEEWrapper(hf_model=random_gpt2(n_layer=2, n_positions=16))
    with pytest.raises(ValueError, match="tokenizer is required"):
        wrapper.generate(prompt="hi", max_new_tokens=1)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"tokenizer": "gpt2"}, TypeError, "tokenizer must be a HuggingFace tokenizer"),
    ({"return_result": "yes"}, TypeError, "return_result must be True or False"),
])
def test_bad_generate_arguments_name_the_parameter(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny.generate(prompt="The quick", max_new_tokens=1, **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"energy_budget": float("nan")}, ValueError, "energy_budget"),
    ({"energy_budget": torch.tensor(0.5)}, TypeError, "energy_budget"),
    ({"attention_mask": [[1, 1]]}, TypeError, "attention_mask must be a torch.Tensor"),
    ({"use_cache": "yes"}, TypeError, "use_cache"),
    ({"exit_layers": -1}, ValueError, "exit_layers"),
])
def test_bad_call_arguments_are_refused(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny(torch.tensor([[1, 2]]), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"hf_model": "gpt2"}, "hf_model must be a HuggingFace.*load_pretrained"),
    ({"hf_model": torch.nn.Linear(2, 2)}, "hf_model must be a HuggingFace"),
    ({"config": {"model_name": "gpt2"}}, "config must be an ANEEConfig"),
])
def test_wrong_things_to_wrap_are_refused(kwargs, match):
    with pytest.raises(TypeError, match=match):
        ANEEWrapper(**kwargs)


@pytest.mark.parametrize("thing", ["gpt2", None, 3])
def test_unrolled_model_and_lens_refuse_wrong_things(thing):
    from anee_lite import UnrolledModel

    with pytest.raises(TypeError, match="hf_model must be"):
        UnrolledModel(thing)
    with pytest.raises(TypeError, match="model must be an anee_lite.UnrolledModel"):
        LogitLens(thing)


def test_editing_the_callers_model_after_wrapping_leaves_the_wrapper_as_documented():
    """Defect 9 of issue 10: the wrapper copies the caller's model by default, so later edits do not reach it."""
    hf = random_gpt2(n_layer=2, n_positions=16)
    wrapper = ANEEWrapper(hf_model=hf)
    ids = torch.tensor([[1, 2, 3]])
    before = wrapper(ids, energy_budget=1.0, exit_budget_threshold=0.0).logits
    with torch.no_grad():
        hf.transformer.h[0].mlp.c_fc.weight.add_(1.0)
    hf.half()
    assert torch.equal(wrapper(ids, energy_budget=1.0, exit_budget_threshold=0.0).logits, before)
