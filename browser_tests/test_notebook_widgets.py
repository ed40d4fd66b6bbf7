"""A real browser (headless Chromium) drives the notebooks' widgets in JupyterLab.

Each test opens a copy of a notebook, runs all its cells from the Run menu, moves a widget the way a
person would (keyboard, mouse drag, typing) and checks that the page then shows what the library
computes in this test process for the new value. The widgets are found by the contract in
``anee_lite.notebook.early_exit_budget`` and ``anee_lite.notebook.logit_lens``: slider/text descriptions (``energy_budget``, ``min_layers``,
``exit_budget_threshold``, ``prompt``) and CSS classes (``anee-layers``, ``anee-text``, ``anee-plot``,
``anee-lens-plot``, ``anee-lens-tokens``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from conftest import save_screenshot

from anee_lite.notebook.parts import show_whitespace

RUN_ALL_TIMEOUT = 180  # s: kernel start, imports, model load and every cell
UPDATE_TIMEOUT = 60  # s: one widget callback (regeneration + plot)
# ipywidgets 8 renders sliders with noUiSlider; ipywidgets 7 used jQuery UI.
HANDLE = ".noUi-handle, .ui-slider-handle"
TRACK = ".noUi-base, .ui-slider"


# --------------------------------------------------------------------------- JupyterLab


def _dismiss_kernel_dialog(page) -> None:
    """Accept a "Select Kernel" dialog (seen when a notebook is opened before the server is warm)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and "kernel" in dialog.first.inner_text().lower():
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()


def open_notebook(page, server, name: str):
    """Open /lab, wait for the launcher, then open the notebook and wait for an idle kernel."""
    server.start_kernel(name)
    workspace = f"{server.url}/lab/workspaces/{re.sub(r'[^A-Za-z0-9]', '-', name)}"  # one per test, reset
    start = time.monotonic()
    page.goto(f"{workspace}?token={server.token}")
    page.locator(".jp-Launcher").first.wait_for(timeout=90_000)
    page.goto(f"{workspace}/tree/{name}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    panel.wait_for(timeout=60_000)
    # The page can show "idle" before it has connected to the kernel, and can still replace the kernel
    # just after: wait until the server sees one idle kernel for the notebook, connected, for 2 s.
    deadline, stable_since, last = time.monotonic() + 90, None, None
    while True:
        _dismiss_kernel_dialog(page)
        kernels = [s["kernel"] for s in server.api("/api/sessions") if s["path"] == name]
        ready = (kernel_idle(panel) and len(kernels) == 1 and kernels[0]["execution_state"] == "idle"
                 and kernels[0]["connections"] >= 1)
        now = (kernels[0]["id"] if ready else None)
        stable_since = (stable_since if now == last else time.monotonic()) if now else None
        last = now
        if stable_since and time.monotonic() - stable_since >= 2:
            print(f"{name} open with an idle kernel in {time.monotonic() - start:.0f}s")
            return panel
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel of {name} is not ready: {kernels}\n{server.log_tail()}")
        time.sleep(0.25)


def _notebook_state(panel) -> dict:
    return panel.evaluate(
        """(panel) => ({
            status: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status,
            prompts: [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.innerText.trim()),
            errors: [...panel.querySelectorAll('.jp-OutputArea-output')]
                .map(o => o.innerText)
                .filter(t => /Traceback|Error:/.test(t) && /\\n/.test(t)),
        })"""
    )


def _click_run_all(page, panel) -> None:
    panel.locator(".jp-InputPrompt").first.click()  # make the notebook the current widget (menu target)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    item = page.locator('li[data-command="runmenu:run-all"]')
    item.wait_for()
    if "lm-mod-disabled" in (item.get_attribute("class") or ""):
        page.keyboard.press("Escape")
        raise AssertionError("Run > Run All Cells is disabled")
    item.click()


def run_all_cells(page, panel, server) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count and the kernel is idle.

    If the kernel sits idle with cells never run (a run lost while the page was still connecting to
    the kernel), Run All is clicked once more.
    """
    _click_run_all(page, panel)
    start = time.monotonic()
    deadline = start + RUN_ALL_TIMEOUT
    retried, stalled_since = False, None
    while True:
        _dismiss_kernel_dialog(page)
        state = _notebook_state(panel)
        if state["errors"]:
            raise AssertionError("a cell failed:\n" + "\n".join(state["errors"])[-3000:])
        done = [bool(re.fullmatch(r"\[\d+\]:", p)) for p in state["prompts"]]
        if state["status"] == "idle" and done and all(done):
            print(f"Run All Cells: {len(done)} code cells in {time.monotonic() - start:.0f}s")
            return
        if state["status"] == "idle" and "[*]:" not in state["prompts"]:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 10 and not retried:
                print(f"Run All stalled with {state['prompts']}; clicking Run All Cells again")
                _click_run_all(page, panel)
                retried, stalled_since = True, None
        else:
            stalled_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"Run All Cells did not finish in {RUN_ALL_TIMEOUT}s: {state}\n{server.log_tail()}")
        time.sleep(0.5)


def kernel_idle(panel) -> bool:
    return panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0


# --------------------------------------------------------------------------- widgets


def labelled(panel, kind: str, description: str):
    """The widget of CSS class ``kind`` whose description label is exactly ``description``."""
    label = panel.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    return panel.locator(kind).filter(has=label)


def one(locator, what: str):
    n = locator.count()
    assert n == 1, f"expected exactly one {what} in the notebook, found {n}"
    return locator.first


def readout(slider) -> float:
    return float(slider.locator(".widget-readout").first.inner_text().strip())


def scroll_to_top(locator) -> None:
    """Scroll the notebook so that this element is at the top (for the screenshots)."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    time.sleep(0.3)


def normalise(text: str) -> str:
    return " ".join(text.split())


def image_src(panel, css_class: str) -> str:
    """The plot: the src (a data: URL) of the image(s) inside the element of that class."""
    images = panel.locator(f".{css_class} img")
    return "\n".join(images.nth(i).get_attribute("src") or "" for i in range(images.count()))


def wait_until(panel, check, what: str, timeout: float = UPDATE_TIMEOUT):
    """Poll ``check()`` (returns (ok, details)) until ok with an idle kernel, twice in a row."""
    deadline = time.monotonic() + timeout
    streak, details = 0, None
    while time.monotonic() < deadline:
        ok, details = check()
        streak = streak + 1 if ok and kernel_idle(panel) else 0
        if streak >= 2:  # still true half a second later: not a transient state between updates
            return details
        time.sleep(0.5)
    raise AssertionError(f"the page did not show {what} within {timeout}s; last seen: {details}")


# --------------------------------------------------------------------------- notebook 03


@dataclass
class BudgetUI:
    panel: object
    energy: object  # the energy_budget slider
    min_layers: object
    threshold: object

    @classmethod
    def find(cls, panel):
        return cls(panel,
                   one(labelled(panel, ".widget-slider", "energy_budget"), "energy_budget slider"),
                   one(labelled(panel, ".widget-slider", "min_layers"), "min_layers slider"),
                   one(labelled(panel, ".widget-slider", "exit_budget_threshold"), "exit_budget_threshold slider"))

    def prompt_box(self):
        return one(labelled(self.panel, ".widget-text", "prompt"), "prompt text box")

    def prompt(self) -> str:
        return self.prompt_box().locator("input").input_value()

    def max_new_tokens(self) -> int:
        widget = labelled(self.panel, ".widget-inline-hbox", "max_new_tokens")  # a leaf widget, not a box
        if widget.count():
            value = widget.first.locator(".widget-readout, input")
            text = value.first.inner_text() if value.first.evaluate("e => e.tagName") != "INPUT" \
                else value.first.input_value()
            return int(float(text.strip()))
        ui_text = self.panel.locator(".jp-Cell", has=self.energy).first.inner_text()
        match = re.search(r"max_new_tokens\s*[=:]\s*(\d+)", ui_text)
        assert match, "max_new_tokens is neither a widget nor shown as `max_new_tokens=N` in the page"
        return int(match.group(1))

    def shown(self) -> dict:
        """What the page shows now."""
        layers = one(self.panel.locator(".anee-layers"), ".anee-layers element").inner_text()
        return {
            "energy_budget": readout(self.energy),
            "layers_text": normalise(layers),
            "text": normalise(one(self.panel.locator(".anee-text"), ".anee-text element").inner_text()),
            "plot": image_src(self.panel, "anee-plot"),
        }


class Expectations:
    """What the library computes, cached per knob values."""

    def __init__(self, wrapper):
        self.wrapper = wrapper
        self._texts = {}

    def layers(self, energy_budget, min_layers, threshold) -> int:
        from anee_lite import budget_exit_layer

        return budget_exit_layer(self.wrapper.n_layers, energy_budget, min_layers, threshold)

    def text(self, prompt, max_new_tokens, energy_budget, min_layers, threshold) -> str:
        key = (prompt, max_new_tokens, self.layers(energy_budget, min_layers, threshold))  # text depends on these
        if key not in self._texts:
            self._texts[key] = self.wrapper.generate(prompt=prompt, max_new_tokens=max_new_tokens,
                                                     energy_budget=energy_budget, min_layers=min_layers,
                                                     exit_budget_threshold=threshold)
        return self._texts[key]


def check_budget_ui(ui: BudgetUI, expect: Expectations, before: dict, action: str) -> dict:
    """After ``action`` moved the slider: the page must show the library's layers, text and a new plot."""
    value = readout(ui.energy)
    assert value != before["energy_budget"], f"{action} did not move the energy_budget slider ({value})"
    min_layers, threshold = int(readout(ui.min_layers)), readout(ui.threshold)
    n = expect.layers(value, min_layers, threshold)
    old_n = expect.layers(before["energy_budget"], min_layers, threshold)
    text = normalise(show_whitespace(expect.text(ui.prompt(), ui.max_new_tokens(), value, min_layers, threshold)))
    total = expect.wrapper.n_layers

    def check():
        shown = ui.shown()
        numbers = re.search(r"(\d+)\s*/\s*(\d+)", shown["layers_text"])
        ok = (shown["energy_budget"] == value
              and numbers is not None and (int(numbers[1]), int(numbers[2])) == (n, total)
              and text in shown["text"]
              and bool(shown["plot"])
              and (n == old_n or shown["plot"] != before["plot"]))
        return ok, {k: (v[:40] + f"... ({len(v)} chars)" if k == "plot" else v) for k, v in shown.items()}

    wait_until(ui.panel, check, f"{n}/{total} layers, the text {text!r} and a new plot for "
                                f"energy_budget={value} (after {action})")
    print(f"{action}: energy_budget={value} -> {n}/{total} layers, text {text!r}")
    return ui.shown() | {"layers": n}


def test_budget_slider_keyboard_and_drag(lab_server, page, wrapper):
    panel = open_notebook(page, lab_server, "03_early_exit_budget.ipynb")
    run_all_cells(page, panel, lab_server)
    ui = BudgetUI.find(panel)
    expect = Expectations(wrapper)
    handle = ui.energy.locator(HANDLE).first
    handle.scroll_into_view_if_needed()

    state = ui.shown()
    assert state["plot"], "no plot image in .anee-plot after Run All"
    scroll_to_top(ui.prompt_box())
    save_screenshot(page, "03_before")

    # Keyboard: focus the handle and press keys. Every step changes the layer count with the defaults.
    steps = [("Home", 1), ("End", 1)] if state["energy_budget"] >= 0.95 else [("End", 1)]
    steps += [("ArrowLeft", 3), ("ArrowRight", 1), ("Home", 1)]
    changed = 0
    for key, times in steps:
        handle.focus()
        for _ in range(times):
            handle.press(key)
        new = check_budget_ui(ui, expect, state, f"{key} x{times}")
        changed += new["layers"] != expect.layers(state["energy_budget"], int(readout(ui.min_layers)),
                                                  readout(ui.threshold))
        state = new
    scroll_to_top(ui.prompt_box())
    save_screenshot(page, "03_after_keyboard")

    # Mouse: drag the handle to 60% of the track.
    handle.scroll_into_view_if_needed()
    box, track = handle.bounding_box(), ui.energy.locator(TRACK).first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + 0.6 * track["width"], box["y"] + box["height"] / 2, steps=12)
    page.mouse.up()
    new = check_budget_ui(ui, expect, state, "drag")
    changed += new["layers"] != state["layers"]
    scroll_to_top(ui.prompt_box())
    save_screenshot(page, "03_after_drag")
    assert changed, "no slider move changed the number of layers: the test checked nothing visible"


# --------------------------------------------------------------------------- notebook 02


def test_logit_lens_prompt(lab_server, page, wrapper):
    panel = open_notebook(page, lab_server, "02_logit_lens.ipynb")
    run_all_cells(page, panel, lab_server)
    box = one(labelled(panel, ".widget-text", "prompt"), "prompt text box").locator("input")
    tokens_el = one(panel.locator(".anee-lens-tokens"), ".anee-lens-tokens element")
    before_plot = image_src(panel, "anee-lens-plot")
    assert before_plot, "no heatmap image in .anee-lens-plot after Run All"
    scroll_to_top(box)
    save_screenshot(page, "02_before")

    new_prompt = "The quick brown fox jumps over the lazy"
    assert box.input_value() != new_prompt
    box.click()
    box.fill(new_prompt)
    box.press("Enter")  # a Text with continuous_update=False sends its value on Enter
    ids = wrapper.tokenizer(new_prompt)["input_ids"]
    tokens = [t for t in (wrapper.tokenizer.decode([i]).strip() for i in ids) if t]

    def check():
        shown = normalise(tokens_el.inner_text())
        pos, in_order = 0, True
        for tok in tokens:  # the prompt's tokens, in order
            pos = shown.find(tok, pos)
            if pos < 0:
                in_order = False
                break
            pos += len(tok)
        plot = image_src(panel, "anee-lens-plot")
        return in_order and bool(plot) and plot != before_plot, {"tokens": shown, "plot_changed": plot != before_plot}

    shown = wait_until(panel, check, f"the tokens {tokens} and a new heatmap")
    print(f"prompt {new_prompt!r}: tokens shown {shown['tokens']!r}")
    scroll_to_top(box)
    save_screenshot(page, "02_after")


# --------------------------------------------------------------------------- notebook 01


def test_attention_viewer_layer_and_head(lab_server, page, wrapper):
    from anee_lite.notebook.gpt2_internals import attention_view

    panel = open_notebook(page, lab_server, "01_gpt2_internals.ipynb")
    run_all_cells(page, panel, lab_server)
    layer = one(labelled(panel, ".widget-slider", "layer"), "layer slider")
    head = one(labelled(panel, ".widget-slider", "head"), "head slider")
    summary = one(panel.locator(".anee-attn-summary"), ".anee-attn-summary element")
    prompt = one(labelled(panel, ".widget-text", "prompt"), "prompt text box").locator("input").input_value()
    layer.scroll_into_view_if_needed()
    save_screenshot(page, "01_attention_before")

    def expect(action: str, before_plot: str) -> str:
        l, h = int(readout(layer)), int(readout(head))
        view = attention_view(wrapper, prompt, l, h)  # what the library computes for the values the page shows
        key, weight = view["last_looks_at"]

        def check():
            shown = normalise(summary.inner_text())
            plot = image_src(panel, "anee-attn-plot")
            ok = (f"Layer {l}, head {h}" in shown and f"{view['sink']:.2f} of their weight" in shown
                  and f"weight {weight:.2f}" in shown and f"position {key}" in shown
                  and bool(plot) and plot != before_plot)
            return ok, {"summary": shown, "plot_changed": plot != before_plot}

        wait_until(panel, check, f"layer {l}, head {h} with sink {view['sink']:.2f} and a new heatmap ({action})")
        print(f"{action}: layer {l}, head {h}, sink {view['sink']:.2f}, last token -> position {key}")
        return image_src(panel, "anee-attn-plot")

    plot = image_src(panel, "anee-attn-plot")
    assert plot, "no heatmap image in .anee-attn-plot after Run All"
    start = (int(readout(layer)), int(readout(head)))
    handle = head.locator(HANDLE).first
    handle.focus()
    handle.press("ArrowRight")  # the next head
    plot = expect("head ArrowRight", plot)
    handle = layer.locator(HANDLE).first
    handle.focus()
    handle.press("Home")  # layer 0: heads that still look at nearby tokens
    plot = expect("layer Home", plot)
    assert (int(readout(layer)), int(readout(head))) == (0, start[1] + 1)
    layer.scroll_into_view_if_needed()
    save_screenshot(page, "01_attention_after")
