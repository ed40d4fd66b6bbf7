"""Notebook 06's explorer: a clickable head grid and sliders for skipped layers and activation sparsity.

:func:`sparsity_view` is the callback, a plain function of the model and the knob values (tested by
pytest); :func:`sparsity_explorer` wires it to ipywidgets (7.7 and 8).

Widget contract (browser_tests/test_sparsity_widgets.py relies on it): one ToggleButton per head
with the CSS class ``anee-head-L-H`` (pressed = the head runs); sliders described ``layers_skipped``
and ``activation_sparsity``; HTML widgets with the classes ``anee-sparsity-stats`` (perplexity and
cost) and ``anee-sparsity-text`` (the generated text).
"""

from __future__ import annotations

import html

import torch
from torch import Tensor

from ..core.metrics import perplexity
from ..sparsity.evaluate import mask_cost
from ..sparsity.select import layers_to_skip
from .widgets import _error_html, _prompt_box, _text_html, _with_class

DEFAULT_PROMPT = "def fibonacci(n):"


def activation_spec(model, fraction: float):
    """What the explorer passes as ``activation_sparsity``: one object for the text and the perplexity alike.

    The wrapper's calibrated thresholds (TEAL: ``model.activation_thresholds(fraction)``, shipped for
    smollm2-135m, calibrated on first use for other models); None at 0.
    """
    return None if fraction <= 0 else model.activation_thresholds(fraction)


def sparsity_view(model, prompt: str, head_mask: Tensor, layers_skipped: int, activation_sparsity: float,
                  influence: Tensor, eval_ids: Tensor, max_new_tokens: int = 12,
                  full_perplexity: float | None = None) -> dict:
    """What the explorer shows for these knobs.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: text to continue.
        head_mask: [n_layers, n_heads] 0/1, the head grid's state.
        layers_skipped: how many layers of lowest Block Influence to skip.
        activation_sparsity: share of the activations entering the linear maps that is zeroed, in [0, 1);
            one spec (:func:`activation_spec`) serves the generated text and the perplexity.
        influence: [n_layers] Block Influence (which layers go first).
        eval_ids: [1, T] held-out tokens for the perplexity.
        max_new_tokens: tokens to generate.
        full_perplexity: the unpruned model's perplexity on ``eval_ids``, if known (it does not depend
            on the knobs: the explorer computes it once, not at every click).

    Returns:
        ``skip_layers``, ``activation`` (the spec passed as ``activation_sparsity``), ``text`` (exactly
        ``model.generate`` with these masks), ``perplexity`` (the forward with the same masks),
        ``full_perplexity``, ``flops_fraction``, ``bytes_fraction`` (what a model pruned to these masks
        runs per decoding token), ``heads_off`` and the two HTML strings.
    """
    dims = model.model.dims
    skip = layers_to_skip(influence, layers_skipped)
    activation = activation_spec(model, activation_sparsity)
    masks = {"skip_layers": skip, "head_mask": head_mask.float(), "activation_sparsity": activation}
    text = model.generate(prompt=prompt, max_new_tokens=max_new_tokens, masks=masks)
    ppl = perplexity(model.model(eval_ids, **masks).logits, eval_ids)
    full_ppl = full_perplexity if full_perplexity is not None else perplexity(model.model(eval_ids).logits, eval_ids)
    fraction = mask_cost(dims, context_len=eval_ids.shape[1], skip_layers=skip, head_mask=head_mask,
                         activation_sparsity=activation_sparsity)
    heads_off = int((head_mask[[l for l in range(dims.n_layers) if l not in skip]] == 0).sum())
    stats = (f"<b>perplexity {ppl:.2f}</b> (full model {full_ppl:.2f}) · "
             f"<b>FLOPs {fraction['flops_fraction']:.3f}</b> · bytes {fraction['bytes_fraction']:.3f} "
             f"of the full model per token · skipped layers {skip or 'none'} · {heads_off} heads off · "
             f"activation sparsity {_describe(activation)}")
    return {"skip_layers": skip, "activation": activation, "text": text, "perplexity": ppl, "full_perplexity": full_ppl, **fraction,
            "heads_off": heads_off, "stats_html": stats, "text_html": _text_html(text)}


def _describe(activation) -> str:
    return "off" if activation is None else f"{activation.fraction:.1f} (calibrated thresholds)"


def sparsity_explorer(model, influence: Tensor, eval_ids: Tensor, prompt: str = DEFAULT_PROMPT,
                      max_new_tokens: int = 12):
    """The head grid, two sliders, the text and the stats; every change recomputes :func:`sparsity_view`.

    Returns:
        An ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets

    dims = model.model.dims
    slider = {"continuous_update": False, "readout": True, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    skipped = widgets.IntSlider(value=0, min=0, max=dims.n_layers - 1, step=1, description="layers_skipped",
                                **slider)
    act = widgets.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.1, description="activation_sparsity",
                              readout_format=".1f", **slider)
    prompt_box = _prompt_box(widgets, prompt)
    # All buttons share one layout and one style (the first button's), the row labels one layout: a notebook
    # that stores its widget state then stores a few models for them, not two per button.
    button_layout, label_layout = widgets.Layout(width="30px", height="22px", padding="0"), widgets.Layout(width="36px")
    shared = {}

    def head_button(layer: int, head: int):
        button = widgets.ToggleButton(value=True, description=str(head), tooltip=f"layer {layer}, head {head}",
                                      layout=button_layout, **shared)
        shared.setdefault("style", button.style)
        return _with_class(button, f"anee-head-{layer}-{head}")

    buttons = [[head_button(l, h) for h in range(dims.n_heads)] for l in range(dims.n_layers)]
    rows = [widgets.HBox([widgets.HTML(f"<code>L{l:02d}</code>", layout=label_layout)] + row)
            for l, row in enumerate(buttons)]
    half = (dims.n_layers + 1) // 2  # two columns of layers keep the grid on one screen
    grid = widgets.HBox([widgets.VBox(rows[:half]), widgets.VBox(rows[half:])])
    stats = _with_class(widgets.HTML(), "anee-sparsity-stats")
    text = _with_class(widgets.HTML(), "anee-sparsity-text")
    known = {}  # the unpruned model's perplexity does not depend on the knobs: computed by the first update only

    def head_mask() -> Tensor:
        return torch.tensor([[1.0 if b.value else 0.0 for b in row] for row in buttons])

    def update(_change=None):
        try:
            view = sparsity_view(model, prompt_box.value, head_mask(), skipped.value, act.value, influence,
                                 eval_ids, max_new_tokens, known.get("full_perplexity"))
        except ValueError as exc:
            stats.value = _error_html(exc)
            return
        known["full_perplexity"] = view["full_perplexity"]
        stats.value = view["stats_html"]
        text.value = view["text_html"]

    for control in [skipped, act, prompt_box] + [b for row in buttons for b in row]:
        control.observe(update, names="value")
    update()
    help_text = widgets.HTML("Click a head to switch it off (pressed = running). "
                             f"<code>{html.escape(model.model.dims.architecture)}</code>: "
                             f"{dims.n_layers} layers x {dims.n_heads} heads.")
    return widgets.VBox([prompt_box, skipped, act, help_text, grid, stats, text])
