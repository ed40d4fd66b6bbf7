"""Notebook 06's callbacks and exercise checks, without a browser."""

import math

import pytest
import torch
from conftest import VOCAB, random_llama

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.notebook.sparsity_exercises import check_block_influence, check_sparsify
from anee_lite.notebook.sparsity_widgets import sparsity_explorer, sparsity_view
from anee_lite.sparsity import block_influence, layers_to_skip
from anee_lite.sparsity.evaluate import mask_cost


class CharTokenizer:
    """Enough of a tokenizer for generate(): one token per character."""

    eos_token_id = None
    pad_token_id = 0

    def __call__(self, text):
        return {"input_ids": [1 + ord(c) % (VOCAB - 1) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(65 + i % 26) for i in ids)


@pytest.fixture(scope="module")
def wrapper():
    return ANEEWrapper(ANEEConfig(min_layers=0), hf_model=random_llama(n_layers=4), tokenizer=CharTokenizer())


def test_view_matches_the_library(wrapper):
    dims = wrapper.model.dims
    ids = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    influence = block_influence(wrapper.model, ids)
    head_mask = torch.ones(dims.n_layers, dims.n_heads)
    head_mask[2, 1] = 0
    view = sparsity_view(wrapper, "abc", head_mask, 1, 0.5, influence, ids, max_new_tokens=5)
    skip = layers_to_skip(influence, 1)
    masks = {"skip_layers": skip, "head_mask": head_mask, "activation_sparsity": 0.5}
    assert view["skip_layers"] == skip
    assert view["text"] == wrapper.generate(prompt="abc", max_new_tokens=5, masks=masks)
    from anee_lite.core.metrics import perplexity

    assert view["perplexity"] == pytest.approx(perplexity(wrapper.model(ids, **masks).logits, ids))
    assert view["flops_fraction"] == pytest.approx(
        mask_cost(dims, context_len=20, skip_layers=skip, head_mask=head_mask, activation_sparsity=0.5)[
            "flops_fraction"])
    assert view["flops_fraction"] < 1
    assert view["heads_off"] == (0 if 2 in skip else 1)
    assert f"{view['perplexity']:.2f}" in view["stats_html"]
    plain = sparsity_view(wrapper, "abc", torch.ones(dims.n_layers, dims.n_heads), 0, 0.0, influence, ids, 5)
    assert plain["flops_fraction"] == pytest.approx(1.0) and plain["perplexity"] == pytest.approx(
        plain["full_perplexity"])


def test_explorer_builds_and_reacts(wrapper):
    pytest.importorskip("ipywidgets")
    dims = wrapper.model.dims
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    box = sparsity_explorer(wrapper, block_influence(wrapper.model, ids), ids, prompt="ab", max_new_tokens=3)

    def find(widget, pred):
        if pred(widget):
            return [widget]
        return [w for child in getattr(widget, "children", ()) for w in find(child, pred)]

    stats = find(box, lambda w: "anee-sparsity-stats" in getattr(w, "_dom_classes", ()))[0]
    head = find(box, lambda w: "anee-head-1-2" in getattr(w, "_dom_classes", ()))[0]
    slider = find(box, lambda w: getattr(w, "description", "") == "activation_sparsity")[0]
    before = stats.value
    assert "0 heads off" in before
    head.value = False
    assert "1 heads off" in stats.value
    slider.value = 0.5
    assert stats.value != before
    assert len(find(box, lambda w: any(c.startswith("anee-head-") for c in getattr(w, "_dom_classes", ())))) \
        == dims.n_layers * dims.n_heads


def test_exercise_checks_accept_right_and_refuse_wrong_answers(capsys):
    from anee_lite import UnrolledModel

    model = UnrolledModel(random_llama(n_layers=3))
    ids = torch.randint(0, VOCAB, (1, 10), generator=torch.Generator().manual_seed(2))

    def right(pre, post):
        return 1 - torch.nn.functional.cosine_similarity(pre, post, dim=-1).mean()

    check_block_influence(right, model, ids)
    with pytest.raises(AssertionError, match="cosine"):
        check_block_influence(lambda pre, post: torch.nn.functional.cosine_similarity(pre, post, dim=-1).mean(),
                              model, ids)

    def sparsify(h, fraction):
        k = int(fraction * h.shape[-1])
        if k == 0:
            return h
        kth = h.abs().kthvalue(k, dim=-1, keepdim=True).values
        return h * (h.abs() > kth)

    check_sparsify(sparsify)
    with pytest.raises(AssertionError, match="magnitude"):
        check_sparsify(lambda h, f: h * (h > h.kthvalue(max(1, int(f * 64)), dim=-1, keepdim=True).values))
    assert "Correct" in capsys.readouterr().out


def _boom(*args):
    raise RuntimeError("boom")


@pytest.mark.parametrize("answer", [_boom, 3, lambda *a: math.nan, lambda *a: torch.zeros(3), lambda *a: "x"])
def test_exercise_checks_give_one_line_errors_for_wrong_kinds_of_answers(answer):
    # NaN used to pass check_block_influence: every comparison with it is False.
    from anee_lite import UnrolledModel
    from anee_lite.notebook.exercises import ExerciseError

    model = UnrolledModel(random_llama(n_layers=2))
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(2))
    with pytest.raises(ExerciseError):
        check_block_influence(answer, model, ids)
    with pytest.raises(ExerciseError):
        check_sparsify(answer)


def test_exercise_checks_wait_for_an_answer(capsys):
    check_block_influence(None, None, None)
    check_sparsify(lambda h, fraction: None)  # the template's placeholder body
    assert capsys.readouterr().out.count("not answered yet") == 2
