"""Notebook 06 in real JupyterLab: click a head off, move the activation-sparsity slider, compare with the library."""

from __future__ import annotations

import re

import torch
from conftest import save_screenshot
from test_notebook_widgets import HANDLE, labelled, normalise, one, open_notebook, readout, run_all_cells, wait_until

NOTEBOOK = "06_sparsity.ipynb"
LAYER, HEAD = 5, 2  # a head to click off (kept by default: every toggle starts pressed)


class Expect:
    """The library's view for the knobs the page shows (the same inputs the notebook builds)."""

    def __init__(self, wrapper):
        from anee_lite.io.texts import eval_ids
        from anee_lite.sparsity import block_influence

        self.wrapper = wrapper
        tok = wrapper.tokenizer
        self.influence = block_influence(wrapper.model, eval_ids(tok, "python_docs_calibration", 128))
        self.heldout = eval_ids(tok, "python_docs_heldout", 128)[:, :64]

    def view(self, prompt, head_mask, layers_skipped, activation_sparsity):
        from anee_lite.notebook.sparsity_widgets import sparsity_view

        return sparsity_view(self.wrapper, prompt, head_mask, layers_skipped, activation_sparsity, self.influence,
                             self.heldout)


def shown(panel) -> dict:
    return {"stats": normalise(one(panel.locator(".anee-sparsity-stats"), ".anee-sparsity-stats").inner_text()),
            "text": normalise(one(panel.locator(".anee-sparsity-text"), ".anee-sparsity-text").inner_text())}


def check_page(panel, view, what: str) -> dict:
    ppl, flops = f"{view['perplexity']:.2f}", f"{view['flops_fraction']:.3f}"
    text = normalise(view["text"])

    def check():
        now = shown(panel)
        ok = f"perplexity {ppl}" in now["stats"] and f"FLOPs {flops}" in now["stats"] and text in now["text"] \
            and f"{view['heads_off']} heads off" in now["stats"]
        return ok, now

    wait_until(panel, check, f"perplexity {ppl}, FLOPs {flops}, {view['heads_off']} heads off and {text!r} ({what})")
    print(f"{what}: perplexity {ppl}, FLOPs {flops}, text {text!r}")
    return shown(panel)


def test_click_a_head_and_move_the_sparsity_slider(lab_server, page, wrapper):
    panel = open_notebook(page, lab_server, NOTEBOOK)
    run_all_cells(page, panel, lab_server)
    expect = Expect(wrapper)
    dims = wrapper.model.dims
    prompt = one(labelled(panel, ".widget-text", "prompt"), "prompt text box").locator("input").input_value()
    skipped = one(labelled(panel, ".widget-slider", "layers_skipped"), "layers_skipped slider")
    act = one(labelled(panel, ".widget-slider", "activation_sparsity"), "activation_sparsity slider")
    assert int(readout(skipped)) == 0 and readout(act) == 0.0
    head_mask = torch.ones(dims.n_layers, dims.n_heads)
    before = check_page(panel, expect.view(prompt, head_mask, 0, 0.0), "after Run All")
    save_screenshot(page, "06_before")

    button = one(panel.locator(f".anee-head-{LAYER}-{HEAD}"), f"head toggle {LAYER}.{HEAD}")
    assert "mod-active" in (button.get_attribute("class") or ""), "a head toggle should start pressed (running)"
    button.scroll_into_view_if_needed()
    button.click()
    head_mask[LAYER, HEAD] = 0
    after_click = check_page(panel, expect.view(prompt, head_mask, 0, 0.0), f"head {LAYER}.{HEAD} clicked off")
    assert "mod-active" not in (button.get_attribute("class") or "")
    assert after_click["stats"] != before["stats"], "clicking a head changed nothing on the page"
    save_screenshot(page, "06_head_off")

    handle = act.locator(HANDLE).first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    wait_until(panel, lambda: (readout(act) == 0.5, readout(act)), "activation_sparsity at 0.5")
    after_slider = check_page(panel, expect.view(prompt, head_mask, 0, 0.5), "activation_sparsity 0.5")
    assert after_slider["stats"] != after_click["stats"]
    assert re.search(r"FLOPs 0\.\d+", after_slider["stats"])
    save_screenshot(page, "06_sparsity")
