"""Notebook 03 (early exit under an energy budget): where the seed's rule stops, which heads the logit lens
ranks last and what removing them costs, quality against budget, and the budget explorer.

The callback :func:`budget_view` is a plain function of the model and the knob values, tested without a
browser; :func:`budget_explorer` wires it to ipywidgets (7.7 on Colab, and 8).

Widget contract (the browser tests rely on it): sliders described ``energy_budget``, ``min_layers``,
``exit_budget_threshold`` and ``max_new_tokens``; a Text described ``prompt``; HTML widgets with the CSS
classes ``anee-layers`` and ``anee-text``; an Output widget with the class ``anee-plot``."""

from __future__ import annotations

import matplotlib.pyplot as plt
from torch import Tensor

from ..budget import budget_exit_layer, budget_table
from ..config import DEFAULT_EXIT_BUDGET_THRESHOLD, DEFAULT_MIN_LAYERS
from ..core.validation import as_list, check_int
from .parts import (
    error_html,
    prompt_text,
    require_items,
    require_keys,
    require_same_length,
    show_figure,
    text_html,
    with_class,
)

DEFAULT_PROMPT = "The future of artificial intelligence is"


def plot_layers_executed(layers_executed: int, n_layers: int) -> plt.Figure:
    """A gauge of the decoder's layers: the ones that ran are filled, the skipped ones grey."""
    n_layers = check_int("n_layers", n_layers, low=1)
    layers_executed = check_int("layers_executed", layers_executed, low=0, high=n_layers)
    fig, ax = plt.subplots(figsize=(7, 1.3))
    colours = ["tab:blue" if l < layers_executed else "0.85" for l in range(n_layers)]
    ax.bar(range(n_layers), [1] * n_layers, width=0.9, color=colours)
    ax.set_xlim(-0.6, n_layers - 0.4)
    ax.set_yticks([])
    ax.set_xticks(range(0, n_layers, max(1, n_layers // 10)))
    ax.set_xlabel("layer")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Layers executed: {layers_executed}/{n_layers}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_quality_vs_budget(rows: list[dict], title: str = "", uniform_perplexity: float | None = None) -> plt.Figure:
    """Layers executed, top-1 agreement with the full model, and perplexity against the energy budget.

    Args:
        rows: dicts with ``energy_budget``, ``layers_executed``, ``top1_agreement``, ``perplexity``,
            as :func:`anee_lite.quality.quality_vs_budget` returns; its ``n_layers`` and
            ``full_perplexity``, when present, are drawn as reference lines.
        title: figure title (e.g. the text and the model).
        uniform_perplexity: draw the perplexity of a uniform guess over the vocabulary (= its size), the
            line above which a model is worse than guessing.
    """
    require_keys("rows", rows, ("energy_budget", "layers_executed", "top1_agreement", "perplexity"))
    budgets = [r["energy_budget"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    panels = [("layers_executed", "layers executed", "What the budget buys"),
              ("top1_agreement", "top-1 agreement with the full model", "Same next token as the full model?"),
              ("perplexity", "perplexity (log scale)", "How well it predicts the text")]
    for ax, (key, ylabel, subtitle) in zip(axes, panels):
        ax.plot(budgets, [r[key] for r in rows], "-o", ms=4, drawstyle="steps-post" if key == "layers_executed"
                else "default")
        ax.set_xlabel("energy_budget")
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle)
        ax.grid(alpha=0.3)
    if rows and "n_layers" in rows[0]:
        axes[0].axhline(rows[0]["n_layers"], color="0.5", ls="--", lw=1, label="all layers")
        axes[0].legend(fontsize=8, loc="lower right")
    if rows and "full_perplexity" in rows[0]:
        axes[2].axhline(rows[0]["full_perplexity"], color="0.5", ls="--", lw=1, label="full model (all layers)")
    if uniform_perplexity is not None:
        axes[2].axhline(uniform_perplexity, color="crimson", ls=":", lw=1.2,
                        label=f"uniform guess over {uniform_perplexity:,.0f} tokens")
    if axes[2].get_legend_handles_labels()[0]:
        axes[2].legend(fontsize=8)
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_budget_layers(n_layers: int, budgets, thresholds=(0.0, 0.1, 0.2, 0.3),
                      min_layers: int = DEFAULT_MIN_LAYERS) -> plt.Figure:
    """Layers executed against the energy budget, one line per ``exit_budget_threshold``.

    Args:
        n_layers: decoder layers in the model.
        budgets: energy budgets for the x axis.
        thresholds: the exit thresholds to compare.
        min_layers: layers that always run.
    """
    budgets = as_list("budgets", budgets, "a list of energy budgets in [0, 1]")
    lines = {t: [row["layers_executed"] for row in budget_table(n_layers, budgets, min_layers, t)]
             for t in thresholds}  # every budget checked before drawing
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for threshold, layers in lines.items():
        ax.plot(budgets, layers, "-o", ms=3, drawstyle="steps-post", label=f"exit_budget_threshold={threshold:g}")
    ax.axhline(min_layers, color="0.5", ls=":", lw=1, label=f"min_layers={min_layers}")
    ax.set_xlabel("energy_budget")
    ax.set_ylabel(f"layers executed (of {n_layers})")
    ax.set_title("Layers executed, for several thresholds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_head_effects(effects) -> plt.Figure:
    """Each head's direct effect on the predicted token's logit, layer by layer: a heatmap.

    Args:
        effects: [n_layers, n_heads] (:func:`anee_lite.interventions.head_direct_effects`).
    """
    if not isinstance(effects, Tensor) or effects.dim() != 2:
        shape = list(effects.shape) if isinstance(effects, Tensor) else type(effects).__name__
        raise ValueError(f"effects must be a [n_layers, n_heads] tensor, got {shape}")
    n_layers, n_heads = effects.shape
    fig, ax = plt.subplots(figsize=(min(10.0, 3.5 + 0.45 * n_heads), 0.22 * n_layers + 1.6), layout="constrained")
    image = ax.imshow(effects.float().cpu().numpy(), cmap="magma", aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    fig.colorbar(image, ax=ax, label="mean |direct effect| on the predicted logit")
    ax.set_title("Direct effect of each head\n(its output read by the logit lens)")
    return fig


def plot_ablation_curves(counts, curves: dict, n_heads_total: int) -> plt.Figure:
    """Top-1 agreement with the full model against the number of heads removed, one line per removal order.

    Args:
        counts: heads removed at each point (x axis).
        curves: {order label: [agreement per count]}.
        n_heads_total: heads in the model (named on the x axis).
    """
    require_items("curves", curves, list)
    counts = as_list("counts", counts, "a list of head counts")
    for label, values in curves.items():
        require_same_length(counts=counts, **{label.replace(" ", "_"): values})
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for (label, values), marker in zip(curves.items(), "os^vD"):
        ax.plot(counts, values, f"-{marker}", ms=4, label=label)
    ax.set_xlim(0, max(counts))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"heads removed (zero ablation), of {n_heads_total}")
    ax.set_ylabel("top-1 agreement with the full model")
    ax.set_title("The quality cost of removing heads")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
        "text_html": text_html(text),
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
    prompt_box = prompt_text(widgets, prompt)
    layers_html = with_class(widgets.HTML(), "anee-layers")
    text_html = with_class(widgets.HTML(), "anee-text")
    plot = with_class(widgets.Output(), "anee-plot")

    def update(_change=None):
        try:
            view = budget_view(model, prompt_box.value, energy.value, min_l.value, threshold.value, n_new.value)
        except ValueError as exc:  # e.g. an empty prompt: say why instead of failing silently in a callback
            text_html.value = error_html(exc)
            return
        layers_html.value = view["layers_html"]
        text_html.value = view["text_html"]

        show_figure(plot, plot_layers_executed(view["layers_executed"], view["n_layers"]))

    for control in (energy, min_l, threshold, n_new, prompt_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, energy, min_l, threshold, n_new, layers_html, plot, text_html])
