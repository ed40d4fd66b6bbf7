"""Interactive views for the notebooks: pure callbacks, plus builders that wire them to ipywidgets.

The callbacks (:func:`budget_view`, :func:`lens_view`) are plain functions of the model and the
knob values, so they are tested without a browser. The builders (:func:`budget_explorer`,
:func:`lens_explorer`) import ipywidgets and matplotlib only when called, and work with
ipywidgets 7.7 (Colab) and 8.x.

Widget contract (the browser tests rely on it): sliders described ``energy_budget``,
``min_layers``, ``exit_budget_threshold`` and ``max_new_tokens``; a Text described ``prompt``;
HTML widgets with the CSS classes ``anee-layers``, ``anee-text`` and ``anee-lens-tokens``; Output
widgets with the classes ``anee-plot`` and ``anee-lens-plot``.
"""

from __future__ import annotations

import html

from ..core.budget import budget_exit_layer
from ..core.config import DEFAULT_EXIT_BUDGET_THRESHOLD, DEFAULT_MIN_LAYERS
from ..lens import LensResult, logit_lens

DEFAULT_PROMPT = "The future of artificial intelligence is"
DEFAULT_LENS_PROMPT = "The Eiffel Tower is in the city of"


def budget_view(model, prompt: str, energy_budget: float, min_layers: int, exit_budget_threshold: float,
                max_new_tokens: int) -> dict:
    """What the budget explorer shows for these knob values.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: text to continue.
        energy_budget, min_layers, exit_budget_threshold: the seed's budget knobs.
        max_new_tokens: tokens to generate.

    Returns:
        ``layers_executed``, ``n_layers``, ``text`` (exactly what ``model.generate`` returns),
        ``layers_html`` ("Layers executed: N/L") and ``text_html`` (the text, html-escaped).

    Raises:
        ValueError: a knob is out of range or the prompt is empty (from the library's checks).
    """
    n_layers = model.n_layers
    layers = budget_exit_layer(n_layers, energy_budget, min_layers, exit_budget_threshold)
    text = model.generate(prompt=prompt, max_new_tokens=max_new_tokens, energy_budget=energy_budget,
                          min_layers=min_layers, exit_budget_threshold=exit_budget_threshold)
    return {
        "layers_executed": layers,
        "n_layers": n_layers,
        "text": text,
        "layers_html": f"<b>Layers executed: {layers}/{n_layers}</b>",
        "text_html": _text_html(text),
    }


def lens_view(model, prompt: str) -> dict:
    """The logit lens of a prompt, with its tokens as the tokenizer splits them.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the text to read layer by layer.

    Returns:
        ``tokens`` (``tokenizer.decode([id])`` for each prompt token), ``tokens_html``,
        ``lens`` (the :class:`anee_lite.lens.LensResult`) and ``top_text`` ([L][T] decoded top tokens).

    Raises:
        ValueError: the prompt is empty or longer than the context window.
    """
    ids, _ = model.encode(prompt)  # [1, T], checked: not empty, fits the context
    tokenizer = model.tokenizer
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    lens: LensResult = logit_lens(model.model, ids)
    top_text = [[tokenizer.decode([i]) for i in row] for row in lens.top_tokens[:, 0].tolist()]
    cells = "".join(f"<code style='margin-right:0.4em'>{html.escape(t.replace(' ', '·'))}</code>" for t in tokens)
    return {
        "tokens": tokens,
        "tokens_html": f"<b>{len(tokens)} tokens:</b> {cells}",
        "lens": lens,
        "top_text": top_text,
    }


def budget_explorer(model, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 10, energy_budget: float = 1.0,
                    min_layers: int = DEFAULT_MIN_LAYERS, exit_budget_threshold: float = DEFAULT_EXIT_BUDGET_THRESHOLD):
    """Sliders for the budget knobs that regenerate the text and redraw the layers executed.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the initial prompt (editable in the box).
        max_new_tokens: initial number of tokens to generate (1..40 on its slider).
        energy_budget, min_layers, exit_budget_threshold: initial knob values.

    Returns:
        An ``ipywidgets.VBox``; display it (or leave it as a cell's last value).
    """
    import ipywidgets as widgets

    n_layers = model.n_layers
    slider = {"continuous_update": False, "readout": True, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    energy = widgets.FloatSlider(value=energy_budget, min=0.0, max=1.0, step=0.05, description="energy_budget",
                                 readout_format=".2f", **slider)
    min_l = widgets.IntSlider(value=min_layers, min=0, max=n_layers, step=1, description="min_layers", **slider)
    threshold = widgets.FloatSlider(value=exit_budget_threshold, min=0.0, max=1.0, step=0.05,
                                    description="exit_budget_threshold", readout_format=".2f", **slider)
    n_new = widgets.IntSlider(value=max_new_tokens, min=1, max=40, step=1, description="max_new_tokens", **slider)
    prompt_box = _prompt_box(widgets, prompt)
    layers_html = _with_class(widgets.HTML(), "anee-layers")
    text_html = _with_class(widgets.HTML(), "anee-text")
    plot = _with_class(widgets.Output(), "anee-plot")

    def update(_change=None):
        try:
            view = budget_view(model, prompt_box.value, energy.value, min_l.value, threshold.value, n_new.value)
        except ValueError as exc:  # e.g. an empty prompt: say why instead of failing silently in a callback
            text_html.value = _error_html(exc)
            return
        layers_html.value = view["layers_html"]
        text_html.value = view["text_html"]
        from .plots import plot_layers_executed

        _show_figure(plot, plot_layers_executed(view["layers_executed"], view["n_layers"]))

    for control in (energy, min_l, threshold, n_new, prompt_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, energy, min_l, threshold, n_new, layers_html, plot, text_html])


def lens_explorer(model, prompt: str = DEFAULT_LENS_PROMPT):
    """A prompt box whose logit-lens heatmap and token list redraw when the prompt is submitted.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the initial prompt.

    Returns:
        An ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets

    prompt_box = _prompt_box(widgets, prompt)
    tokens_html = _with_class(widgets.HTML(), "anee-lens-tokens")
    plot = _with_class(widgets.Output(), "anee-lens-plot")

    def update(_change=None):
        try:
            view = lens_view(model, prompt_box.value)
        except ValueError as exc:
            tokens_html.value = _error_html(exc)
            return
        tokens_html.value = view["tokens_html"]
        from .plots import plot_lens_heatmap

        _show_figure(plot, plot_lens_heatmap(view["lens"], view["tokens"], view["top_text"]))

    prompt_box.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, tokens_html, plot])


def _prompt_box(widgets, prompt: str):
    # continuous_update=False: recompute on Enter or blur, not on every keystroke
    return widgets.Text(value=prompt, description="prompt", continuous_update=False,
                        style={"description_width": "initial"}, layout=widgets.Layout(width="600px"))


def _with_class(widget, css_class: str):
    widget.add_class(css_class)  # the browser tests find widgets by these classes
    return widget


def _error_html(exc: Exception) -> str:
    return f"<span style='color:#b00'>{html.escape(str(exc))}</span>"


def _text_html(text: str) -> str:
    # pre-wrap keeps the model's spaces and newlines as generate() returned them.
    return f"<div style='white-space: pre-wrap; font-family: monospace'>{html.escape(text)}</div>"


def _show_figure(output, fig) -> None:
    """Replace what the Output widget ``output`` shows with the figure ``fig``."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)
    plt.close(fig)  # displayed once as an image; an open figure would show again at the cell's end
