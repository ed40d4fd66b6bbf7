"""A real browser drives notebook 06's sparsity explorer in JupyterLab.

The page is opened and run as in ``test_notebook_widgets.py`` (its helpers are reused). The test clicks
one head button (CSS class ``anee-head-L-H``) off, then moves the ``activation_sparsity`` slider with the
keyboard, and after each action checks that the ``anee-sparsity-stats`` line and the
``anee-sparsity-text`` text show what :func:`anee_lite.notebook.sparsity.sparsity_view` computes in
this test process for the page's knob values (the widget contract is in that module's docstring).
"""

from __future__ import annotations

import html
import re

import torch
from conftest import save_screenshot
from test_notebook_widgets import (
    HANDLE,
    labelled,
    normalise,
    one,
    open_notebook,
    readout,
    run_all_cells,
    scroll_to_top,
    wait_until,
)

from anee_lite.notebook.parts import show_whitespace

NOTEBOOK = "06_sparsity.ipynb"
HEAD = (3, 4)  # the head the test switches off: layer 3, query head 4


def notebook_inputs(wrapper):
    """What the notebook hands the explorer: Block Influence on 128 calibration tokens, 64 held-out tokens."""
    from anee_lite.io import eval_ids
    from anee_lite.sparsity import block_influence

    influence = block_influence(wrapper.model, eval_ids(wrapper.tokenizer, "python_docs_calibration", 128))
    return influence, eval_ids(wrapper.tokenizer, "python_docs_heldout", 128)[:, :64]


def expected(wrapper, inputs, prompt: str, heads_off, layers_skipped: int, activation: float) -> dict:
    """The stats line (as text) and the generated text the page must show for these knobs."""
    from anee_lite.notebook.sparsity import sparsity_view

    dims = wrapper.model.dims
    head_mask = torch.ones(dims.n_layers, dims.n_heads)
    for layer, head in heads_off:
        head_mask[layer, head] = 0
    view = sparsity_view(wrapper, prompt, head_mask, layers_skipped, activation, *inputs)
    stats = normalise(html.unescape(re.sub(r"<[^>]+>", "", view["stats_html"])))
    return {"stats": stats, "text": normalise(show_whitespace(view["text"]))}


def test_head_click_and_activation_slider(lab_server, page, wrapper):
    panel = open_notebook(page, lab_server, NOTEBOOK)
    run_all_cells(page, panel, lab_server)
    prompt_box = one(labelled(panel, ".widget-text", "prompt"), "prompt text box")
    skipped = one(labelled(panel, ".widget-slider", "layers_skipped"), "layers_skipped slider")
    act = one(labelled(panel, ".widget-slider", "activation_sparsity"), "activation_sparsity slider")
    stats = one(panel.locator(".anee-sparsity-stats"), ".anee-sparsity-stats element")
    text = one(panel.locator(".anee-sparsity-text"), ".anee-sparsity-text element")
    dims = wrapper.model.dims
    assert panel.locator("[class*='anee-head-']").count() == dims.n_layers * dims.n_heads
    inputs = notebook_inputs(wrapper)
    prompt = prompt_box.locator("input").input_value()

    def expect(heads_off, action: str) -> dict:
        knobs = (int(readout(skipped)), readout(act))
        want = expected(wrapper, inputs, prompt, heads_off, *knobs)

        def check():
            shown = {"stats": normalise(stats.inner_text()), "text": normalise(text.inner_text())}
            return shown["stats"] == want["stats"] and want["text"] in shown["text"], shown

        wait_until(panel, check, f"{want['stats']!r} and the text {want['text']!r} (after {action})")
        print(f"{action}: knobs {knobs}, heads off {heads_off} -> {want['stats']}")
        return want

    before = expect([], "Run All")
    assert "0 heads off" in before["stats"] and "activation sparsity off" in before["stats"]
    scroll_to_top(prompt_box)
    save_screenshot(page, "06_before")

    # Mouse: click one head off.
    button = one(panel.locator(f".anee-head-{HEAD[0]}-{HEAD[1]}"), f"anee-head-{HEAD[0]}-{HEAD[1]} button")
    button.scroll_into_view_if_needed()
    button.click()
    clicked = expect([HEAD], f"click head {HEAD}")
    assert "1 heads off" in clicked["stats"] and clicked["stats"] != before["stats"]
    scroll_to_top(prompt_box)
    save_screenshot(page, "06_after_head_click")

    # Keyboard: move the activation_sparsity slider from 0.0 to 0.5.
    handle = act.locator(HANDLE).first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    assert readout(act) == 0.5, f"the activation_sparsity slider reads {readout(act)}"
    moved = expect([HEAD], "activation_sparsity ArrowRight x5")
    assert "activation sparsity 0.5" in moved["stats"] and moved["stats"] != clicked["stats"]
    scroll_to_top(prompt_box)
    save_screenshot(page, "06_after_activation_slider")
