"""A real browser drives notebook 07's virtual-accelerator explorer in JupyterLab.

The page is opened and run as in ``test_notebook_widgets.py`` (its helpers are reused); the test picks
other devices in the ``device`` dropdown and moves the
``batch`` slider, and checks that the ``anee-sim-result`` line then shows what the simulator computes
in this test process for the new knob values, and that the ``anee-sim-plot`` image changed.
"""

from __future__ import annotations

import re

from conftest import save_screenshot
from test_notebook_widgets import (
    HANDLE,
    image_src,
    labelled,
    normalise,
    one,
    open_notebook,
    readout,
    run_all_cells,
    scroll_to_top,
    wait_until,
)

NOTEBOOK = "07_virtual_accelerator.ipynb"


def expected_line(dims, device: str, energy_budget: float, batch: int, context: int) -> str:
    """The ms/token figure the page must show, from the library in this process."""
    from anee_lite.cost.devices import get_profile
    from anee_lite.notebook.virtual_accelerator import accelerator_view

    view = accelerator_view(dims, {device: get_profile(device)}, device, energy_budget, batch, context)
    return f"{1e3 * view['seconds_per_token']:.3f} ms/token"


def test_device_dropdown_and_batch_slider(lab_server, page, wrapper):
    panel = open_notebook(page, lab_server, NOTEBOOK)
    run_all_cells(page, panel, lab_server)
    dims = wrapper.model.dims
    dropdown = one(labelled(panel, ".widget-dropdown", "device"), "device dropdown").locator("select")
    batch = one(labelled(panel, ".widget-slider", "batch"), "batch slider")
    energy = one(labelled(panel, ".widget-slider", "energy_budget"), "energy_budget slider")
    context = one(labelled(panel, ".widget-slider", "context"), "context slider")
    result = one(panel.locator(".anee-sim-result"), ".anee-sim-result element")

    def shown():
        return {"device": dropdown.input_value(), "text": normalise(result.inner_text()),
                "plot": image_src(panel, "anee-sim-plot")}

    def expect(device: str, before_plot: str, action: str) -> dict:
        knobs = (readout(energy), int(readout(batch)), int(readout(context)))
        line = expected_line(dims, device, *knobs)

        def check():
            s = shown()
            ok = (s["device"] == device and s["text"].startswith(device) and line in s["text"]
                  and bool(s["plot"]) and s["plot"] != before_plot)
            return ok, {"device": s["device"], "text": s["text"][:160]}

        wait_until(panel, check, f"{device}: {line} and a new plot (after {action})")
        print(f"{action}: {device}, knobs {knobs} -> {line}")
        return shown()

    state = shown()
    assert state["plot"], "no plot image in .anee-sim-plot after Run All"
    assert state["device"] == "t4" and expected_line(dims, "t4", readout(energy), int(readout(batch)),
                                                     int(readout(context))) in state["text"]
    scroll_to_top(dropdown)
    save_screenshot(page, "07_before")

    # Mouse: choose another device in the <select>, as a person does from the list.
    dropdown.select_option("raspberry-pi-5")
    state = expect("raspberry-pi-5", state["plot"], "select raspberry-pi-5")
    save_screenshot(page, "07_after_select")

    # A second choice, the device just above in the list. (ArrowUp on the focused <select> did not change
    # the selection in headless Chromium here, so the list is used again rather than the keyboard.)
    options = dropdown.locator("option").all_inner_texts()
    previous = options[options.index("raspberry-pi-5") - 1]
    dropdown.select_option(previous.strip())
    state = expect(previous.strip(), state["plot"], f"select {previous.strip()}")

    # The batch slider, with the keyboard: a new batch changes the time per token.
    handle = batch.locator(HANDLE).first
    handle.scroll_into_view_if_needed()
    before_batch = readout(batch)
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    assert readout(batch) != before_batch, "the batch slider did not move"
    state = expect(previous.strip(), state["plot"], "batch ArrowRight x3")
    assert re.search(rf"batch {int(readout(batch))}\b", state["text"])
    scroll_to_top(dropdown)
    save_screenshot(page, "07_after_batch")
