"""The notebooks' widget callbacks, quality curves and plots, on a tiny random GPT-2 built here."""

import subprocess
import sys

import pytest
import torch

from anee_lite import ANEEConfig, ANEEWrapper, budget_exit_layer
from anee_lite.adaptive import quality_vs_budget
from anee_lite.core.metrics import perplexity, top1_agreement
from anee_lite.io import eval_ids, eval_text
from anee_lite.notebook.early_exit_budget import budget_explorer, budget_view
from anee_lite.notebook.logit_lens import lens_explorer, lens_view

PROMPT = "The quick brown fox"
KNOBS = [  # energy_budget, min_layers, exit_budget_threshold
    (1.0, 2, 0.1),
    (0.5, 1, 0.1),
    (0.0, 0, 0.1),  # no layer at all: the prediction comes from the embeddings
    (0.3, 0, 0.0),
]


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_folder):
    return ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)))


@pytest.mark.parametrize("energy_budget,min_layers,threshold", KNOBS)
def test_budget_view_matches_the_library(tiny, energy_budget, min_layers, threshold):
    view = budget_view(tiny, PROMPT, energy_budget, min_layers, threshold, max_new_tokens=5)
    layers = budget_exit_layer(tiny.n_layers, energy_budget, min_layers, threshold)
    assert view["layers_executed"] == layers
    assert view["n_layers"] == tiny.n_layers
    assert view["layers_html"] == f"<b>Layers executed: {layers}/{tiny.n_layers}</b>"
    assert view["text"] == tiny.generate(prompt=PROMPT, max_new_tokens=5, energy_budget=energy_budget,
                                         min_layers=min_layers, exit_budget_threshold=threshold)


def test_budget_view_escapes_the_text(tiny):
    view = budget_view(tiny, "a <b> & c", 1.0, 2, 0.1, max_new_tokens=2)
    assert "&lt;b&gt; &amp; c" in view["text_html"]
    assert "<b>" not in view["text_html"]


def test_budget_view_refuses_bad_knobs(tiny):
    with pytest.raises(ValueError, match="energy_budget"):
        budget_view(tiny, PROMPT, 1.5, 2, 0.1, max_new_tokens=2)
    with pytest.raises(ValueError, match="min_layers"):
        budget_view(tiny, PROMPT, 1.0, tiny.n_layers + 1, 0.1, max_new_tokens=2)


def test_lens_view_lists_the_tokens_and_reads_every_layer(tiny):
    view = lens_view(tiny, PROMPT)
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    assert view["tokens"] == [tiny.tokenizer.decode([i]) for i in ids]
    lens = view["lens"]
    assert lens.top_tokens.shape == (tiny.n_layers + 1, 1, len(ids))
    full = tiny.model.forward(torch.tensor([ids])).logits
    assert torch.equal(lens.top_tokens[-1], full.argmax(-1))
    assert view["top_text"][-1] == [tiny.tokenizer.decode([i]) for i in full.argmax(-1)[0].tolist()]
    assert all(f"{t.replace(' ', '·')}</code>" in view["tokens_html"] for t in view["tokens"])


def test_lens_view_refuses_an_empty_prompt(tiny):
    with pytest.raises(ValueError, match="empty"):
        lens_view(tiny, "")


def _by_description(box):
    return {w.description: w for w in box.children if getattr(w, "description", "")}


def _by_class(box, name):
    (widget,) = [w for w in box.children if name in w._dom_classes]
    return widget


def test_budget_explorer_follows_the_contract(tiny):
    import ipywidgets as widgets

    box = budget_explorer(tiny, prompt=PROMPT, max_new_tokens=4)
    controls = _by_description(box)
    energy, min_layers, threshold = controls["energy_budget"], controls["min_layers"], controls[
        "exit_budget_threshold"]
    assert isinstance(energy, widgets.FloatSlider) and (energy.min, energy.max, energy.step) == (0, 1, 0.05)
    assert isinstance(min_layers, widgets.IntSlider) and (min_layers.min, min_layers.max) == (0, tiny.n_layers)
    assert isinstance(threshold, widgets.FloatSlider) and (threshold.min, threshold.max, threshold.step) == (0, 1, 0.05)
    assert isinstance(controls["prompt"], widgets.Text) and controls["prompt"].value == PROMPT
    assert controls["max_new_tokens"].value == 4
    for control in controls.values():
        assert control.continuous_update is False
    assert isinstance(_by_class(box, "anee-plot"), widgets.Output)
    layers_html, text_html = _by_class(box, "anee-layers"), _by_class(box, "anee-text")

    for knobs in KNOBS:
        energy.value, min_layers.value, threshold.value = knobs
        expected = budget_view(tiny, PROMPT, *knobs, max_new_tokens=4)
        assert layers_html.value == expected["layers_html"]
        assert text_html.value == expected["text_html"]

    controls["prompt"].value = ""  # the library's error is shown, not raised inside the callback
    assert "empty" in text_html.value


def test_lens_explorer_redraws_on_a_new_prompt(tiny):
    import ipywidgets as widgets

    box = lens_explorer(tiny, prompt=PROMPT)
    prompt = _by_description(box)["prompt"]
    assert prompt.continuous_update is False
    assert isinstance(_by_class(box, "anee-lens-plot"), widgets.Output)
    tokens = _by_class(box, "anee-lens-tokens")
    assert tokens.value == lens_view(tiny, PROMPT)["tokens_html"]
    prompt.value = "Early exits save compute."
    assert tokens.value == lens_view(tiny, "Early exits save compute.")["tokens_html"]


def test_quality_vs_budget_equals_running_the_budget(tiny):
    ids = eval_ids(tiny.tokenizer, n_tokens=40)
    assert ids.shape == (1, 40)
    budgets = [0.0, 0.5, 1.0]
    rows = quality_vs_budget(tiny, ids, budgets, min_layers=0)
    full = tiny(ids, exit_budget_threshold=0.0).logits
    for row, budget in zip(rows, budgets):
        out = tiny(ids, energy_budget=budget, min_layers=0)
        assert row["layers_executed"] == out.stats.layers_executed
        assert row["top1_agreement"] == pytest.approx(top1_agreement(out.logits, full))
        assert row["perplexity"] == pytest.approx(perplexity(out.logits, ids), rel=1e-5)
        assert row["full_perplexity"] == pytest.approx(perplexity(full, ids), rel=1e-5)


def test_eval_text_names_the_choices():
    assert "Python" in eval_text("python_docs_heldout")
    with pytest.raises(ValueError, match="kjv_heldout"):
        eval_text("nope")


def test_plots_build(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anee_lite.notebook import early_exit_budget, gpt2_internals, logit_lens

    ids = torch.tensor([tiny.tokenizer(PROMPT)["input_ids"]])
    out = tiny.model.forward(ids, return_resid=True, return_patterns=True)
    view = lens_view(tiny, PROMPT)
    rows = quality_vs_budget(tiny, ids, [0.0, 1.0])
    figures = [
        gpt2_internals.plot_attention_patterns(out.activations["blocks.0.attn.hook_pattern"][0], view["tokens"]),
        gpt2_internals.plot_residual_contributions(out.activations, tiny.n_layers),
        logit_lens.plot_lens_heatmap(view["lens"], view["tokens"], view["top_text"]),
        logit_lens.plot_lens_metrics(view["lens"]),
        early_exit_budget.plot_layers_executed(1, tiny.n_layers),
        early_exit_budget.plot_quality_vs_budget(rows, uniform_perplexity=tiny.model.dims.d_vocab),
    ]
    top = view["lens"].log_probs[:, 0, -1].exp().topk(3)  # [rows, 3]
    text = [[tiny.tokenizer.decode([i]) for i in row] for row in top.indices.tolist()]
    figures.append(logit_lens.plot_lens_top_k(top.values, text, text[-1][0]))
    figures.append(gpt2_internals.plot_softmax_saturation([4, 16], [0.5, 0.9], [0.4, 0.4], n_keys=8))
    assert all(isinstance(f, plt.Figure) for f in figures)
    for f in figures[2:4] + figures[5:]:  # the attention grids label only the outer edge; the gauge has no axes
        for ax in f.axes:
            if ax.get_label() != "<colorbar>":
                assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax
    plt.close("all")


def test_core_imports_no_plotting_or_widget_library():
    """The library, the notebook package (load_notebook_model) and the exercise checks work without them."""
    code = ("import sys, anee_lite, anee_lite.adaptive, anee_lite.cost, anee_lite.notebook, anee_lite.notebook.exercises; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_generated_whitespace_is_shown_not_left_blank():
    """A model that emits newlines shows marks (notebook 03's explorer once showed a large blank area)."""
    from anee_lite.notebook.parts import show_whitespace, text_html

    text = "def f():\n\n\n\treturn '<b>'\r\n"
    shown = text_html(text)
    assert shown.count("↵") == 4 and shown.count("⇥") == 1 and shown.count("␍") == 1
    assert "&lt;b&gt;" in shown and "<b>" not in shown  # the model's text is never read as HTML
    assert show_whitespace(text) == "def f():↵\n↵\n↵\n⇥\treturn '<b>'␍\r↵\n"
    assert show_whitespace(text).replace("↵", "").replace("⇥", "").replace("␍", "") == text  # nothing dropped


def test_the_patching_map_labels_its_axes_and_refuses_mismatched_tokens():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anee_lite.notebook.logit_lens import plot_patching

    fig = plot_patching(torch.rand(4, 3), ["a", "b", "c"])
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    plt.close(fig)
    with pytest.raises(ValueError, match="3 positions"):
        plot_patching(torch.rand(4, 3), ["a", "b"])
    with pytest.raises(TypeError, match="restored"):
        plot_patching([[0.5]], ["a"])
