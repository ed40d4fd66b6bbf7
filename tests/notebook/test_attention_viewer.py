"""Notebook 01's attention viewer: its callback against HuggingFace's attention, its widget contract and
its refusals, on the tiny random GPT-2 built in tests/conftest.py."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.notebook.gpt2_internals import attention_view, attention_viewer, plot_attention_head

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_folder):
    return ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)))


@pytest.fixture(scope="module")
def hf_attentions(tiny_gpt2_folder, tiny):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(str(tiny_gpt2_folder), attn_implementation="eager").eval()
    ids = tiny.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return hf(ids, output_attentions=True).attentions  # n_layers x [1, H, T, T]


def test_the_view_shows_huggingfaces_attention_of_every_head(tiny, hf_attentions):
    dims = tiny.model.dims
    for layer in range(dims.n_layers):
        for head in range(dims.n_heads):
            view = attention_view(tiny, PROMPT, layer, head)
            reference = hf_attentions[layer][0, head]  # [T, T]
            torch.testing.assert_close(view["pattern"], reference, atol=1e-5, rtol=1e-4)
            assert view["sink"] == pytest.approx(float(reference[1:, 0].mean()), abs=1e-5)
            key = int(reference[-1].argmax())
            assert view["last_looks_at"] == (key, pytest.approx(float(reference[-1, key]), abs=1e-5))
            assert f"Layer {layer}, head {head}" in view["summary_html"]
            assert f"{view['sink']:.2f}" in view["summary_html"]


def test_the_uniform_reference_is_the_mean_of_one_over_the_keys_seen(tiny):
    view = attention_view(tiny, PROMPT, 0, 0)
    T = len(view["tokens"])
    # query t (t = 1 .. T-1) sees t + 1 keys; uniform attention gives the first one 1 / (t + 1)
    assert view["uniform"] == pytest.approx(sum(1 / (t + 1) for t in range(1, T)) / (T - 1))
    causal = torch.full((T, T), float("-inf")).triu(1).softmax(-1)  # a uniform causal pattern
    assert view["uniform"] == pytest.approx(float(causal[1:, 0].mean()))
    assert "".join(view["tokens"]) == PROMPT


def test_a_one_token_prompt_has_no_sink_to_measure(tiny):
    ids = tiny.tokenizer("The", return_tensors="pt").input_ids
    assert ids.shape[1] == 1
    view = attention_view(tiny, "The", 0, 0)
    assert view["sink"] is None and view["pattern"].shape == (1, 1) and "itself" in view["summary_html"]


@settings(max_examples=25, deadline=None)
@given(layer=st.integers(-5, 10), head=st.integers(-5, 10))
def test_out_of_range_layers_and_heads_are_refused_by_name(tiny, layer, head):
    dims = tiny.model.dims
    if 0 <= layer < dims.n_layers and 0 <= head < dims.n_heads:
        assert attention_view(tiny, PROMPT, layer, head)["pattern"].shape[0] > 0
        return
    name = "layer" if not 0 <= layer < dims.n_layers else "head"
    with pytest.raises(ValueError, match=rf"^{name} must be in \[0, "):
        attention_view(tiny, PROMPT, layer, head)


def test_bad_types_and_an_empty_prompt_are_refused(tiny):
    with pytest.raises(TypeError, match="layer must be an integer"):
        attention_view(tiny, PROMPT, 1.0, 0)
    with pytest.raises(TypeError, match="head must be an integer"):
        attention_view(tiny, PROMPT, 0, "0")
    with pytest.raises(ValueError, match="empty"):
        attention_view(tiny, "", 0, 0)


def test_the_viewer_follows_its_sliders_and_prompt(tiny):
    import ipywidgets as widgets

    box = attention_viewer(tiny, prompt=PROMPT, layer=0, head=0)
    controls = {w.description: w for w in box.children if getattr(w, "description", "")}
    layer, head, prompt = controls["layer"], controls["head"], controls["prompt"]
    dims = tiny.model.dims
    assert isinstance(layer, widgets.IntSlider) and (layer.min, layer.max) == (0, dims.n_layers - 1)
    assert isinstance(head, widgets.IntSlider) and (head.min, head.max) == (0, dims.n_heads - 1)
    assert all(c.continuous_update is False for c in (layer, head, prompt))
    (summary,) = [w for w in box.children if "anee-attn-summary" in w._dom_classes]
    (plot,) = [w for w in box.children if "anee-attn-plot" in w._dom_classes]
    assert isinstance(plot, widgets.Output)
    for l, h in [(1, 0), (1, dims.n_heads - 1), (0, 1)]:
        layer.value, head.value = l, h
        assert summary.value == attention_view(tiny, PROMPT, l, h)["summary_html"]
    prompt.value = "Early exits save compute."
    assert summary.value == attention_view(tiny, "Early exits save compute.", 0, 1)["summary_html"]
    prompt.value = ""  # the error is shown, not raised inside the callback
    assert "empty" in summary.value
    assert attention_viewer(tiny, prompt=PROMPT) is not None  # default layer: the middle one


def test_the_heatmap_labels_both_axes_with_the_tokens(tiny):
    view = attention_view(tiny, PROMPT, 1, 1)
    fig = plot_attention_head(view["pattern"], view["tokens"], "t")
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == len(ax.get_yticklabels()) == len(view["tokens"])
    assert "key" in ax.get_xlabel() and "query" in ax.get_ylabel()
    with pytest.raises(ValueError, match="one head's"):
        plot_attention_head(view["pattern"][None], view["tokens"])
    with pytest.raises(ValueError, match="token strings"):
        plot_attention_head(view["pattern"], view["tokens"][:-1])
