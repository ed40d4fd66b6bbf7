"""Notebook 01 (GPT-2 internals): attention patterns and their viewer, softmax saturation, what each block adds
to the residual.

Every plot returns a ``matplotlib.figure.Figure`` made with pyplot, so a notebook shows it at the end of the
cell."""

from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
from torch import Tensor

from ..core.validation import check_int
from .parts import error_html, prompt_text, require_keys, show_figure, token_label, with_class

DEFAULT_ATTENTION_PROMPT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"


def plot_attention_patterns(pattern: Tensor, tokens: list[str], title: str = "") -> plt.Figure:
    """One heatmap per head: how much each query token (row) attends to each key token (column).

    Args:
        pattern: [H, T, T] attention probabilities of one layer for one sequence.
        tokens: the T token strings, for the axis labels.
        title: figure title, e.g. the layer.
    """
    if not isinstance(pattern, Tensor) or pattern.dim() != 3 or pattern.shape[1] != pattern.shape[2]:
        shape = list(pattern.shape) if isinstance(pattern, Tensor) else type(pattern).__name__
        # a [B, H, T, T] hook_pattern was drawn as B panels of [H, T, T] "colour images"
        raise ValueError(f"pattern must be one layer's [H, T, T] attention of one sequence, got {shape} "
                         "(for out.activations['blocks.{l}.attn.hook_pattern'] [B, H, T, T], pass [0] of it)")
    n_heads, T = pattern.shape[0], pattern.shape[-1]
    if len(tokens) != T:
        raise ValueError(f"tokens must hold the pattern's {T} token strings, got {len(tokens)}")
    cols = math.ceil(math.sqrt(n_heads))
    rows = math.ceil(n_heads / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 1.2, 2.4 * rows + 0.8), squeeze=False,
                             layout="constrained")
    labels = [token_label(t, 8) for t in tokens]
    for h, ax in enumerate(axes.flat):
        if h >= n_heads:
            ax.axis("off")
            continue
        image = ax.imshow(pattern[h].float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
        # Labels only on the outer edge, so the small panels stay readable.
        ax.set_xticklabels(labels if h // cols == rows - 1 or h + cols >= n_heads else [], rotation=90, fontsize=7)
        ax.set_yticklabels(labels if h % cols == 0 else [], fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention probability")
    fig.suptitle(title or "Attention patterns (row = query, column = key)")
    return fig


def plot_softmax_saturation(d_heads: list[int], max_prob_raw: list[float], max_prob_scaled: list[float],
                            n_keys: int) -> plt.Figure:
    """Mean largest attention weight against head width, with raw and with ``1/sqrt(d_head)``-scaled scores.

    Args:
        d_heads: head widths (x axis).
        max_prob_raw: mean over trials of the largest softmax weight of raw q.k scores.
        max_prob_scaled: the same with the scores divided by sqrt(d_head).
        n_keys: keys each query attends over (a uniform pattern puts 1 / n_keys on each).
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(d_heads, max_prob_raw, "o-", label="raw scores q.k: saturates towards one key")
    ax.plot(d_heads, max_prob_scaled, "s-", label="scores / sqrt(d_head): stays spread out")
    ax.axhline(1 / n_keys, color="0.5", ls=":", lw=1, label=f"uniform over {n_keys} keys")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("head width d_head (random queries and keys, unit variance)")
    ax.set_ylabel("largest attention weight (mean)")
    ax.set_title("Why attention divides by sqrt(d_head)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_residual_contributions(activations: dict[str, Tensor], n_layers: int, position: int = -1) -> plt.Figure:
    """How big the residual stream is after each layer, and what attention and the MLP add to it.

    Args:
        activations: ``ForwardOutput.activations`` of a forward with ``return_resid=True``.
        n_layers: layers that ran.
        position: which token to follow (default: the last one).
    """
    n_layers = check_int("n_layers", n_layers, low=1)
    require_keys("activations", activations, [f"blocks.{l}.hook_resid_{h}" for l in range(n_layers)
                                              for h in ("pre", "mid", "post")])  # a return_resid=True forward

    def norm(key):
        return float(activations[key][0, position].norm())

    layers = range(n_layers)
    stream = [norm(f"blocks.{l}.hook_resid_post") for l in layers]
    attn = [float((activations[f"blocks.{l}.hook_resid_mid"] - activations[f"blocks.{l}.hook_resid_pre"])
                  [0, position].norm()) for l in layers]
    mlp = [float((activations[f"blocks.{l}.hook_resid_post"] - activations[f"blocks.{l}.hook_resid_mid"])
                 [0, position].norm()) for l in layers]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(layers, stream, "k-o", ms=3, label="residual stream after the layer")
    ax.plot(layers, attn, "-s", ms=3, label="added by attention")
    ax.plot(layers, mlp, "-^", ms=3, label="added by the MLP")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("L2 norm (log scale)")
    ax.set_title("Each block adds to the residual stream (last token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_attention_head(pattern: Tensor, tokens: list[str], title: str = "") -> plt.Figure:
    """One head's attention pattern as a heatmap, with the tokens on both axes.

    Args:
        pattern: [T, T] attention probabilities of one head (row = query, column = key).
        tokens: the T token strings.
        title: figure title, e.g. the layer and head.
    """
    if not isinstance(pattern, Tensor) or pattern.dim() != 2 or pattern.shape[0] != pattern.shape[1]:
        shape = list(pattern.shape) if isinstance(pattern, Tensor) else type(pattern).__name__
        raise ValueError(f"pattern must be one head's [T, T] attention, got {shape} "
                         "(from a hook_pattern [B, H, T, T], pass [0, head])")
    T = pattern.shape[0]
    if len(tokens) != T:
        raise ValueError(f"tokens must hold the pattern's {T} token strings, got {len(tokens)}")
    labels = [token_label(t, 10) for t in tokens]
    side = min(9.0, 2.5 + 0.32 * T)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    image = ax.imshow(pattern.float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.set_xticklabels(labels, rotation=90, fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("key token (looked at)")
    ax.set_ylabel("query token (looking)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention probability")
    ax.set_title(title or "Attention pattern")
    return fig


def attention_view(model, prompt: str, layer: int, head: int) -> dict:
    """What the attention viewer shows for one prompt, layer and head.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the text whose attention to show.
        layer: block index, 0 .. n_layers - 1.
        head: query head index, 0 .. n_heads - 1.

    Returns:
        ``tokens`` (``tokenizer.decode([id])`` per prompt token), ``pattern`` ([T, T], the library's
        ``blocks.{layer}.attn.hook_pattern[0, head]``), ``sink`` (mean weight on the first token over the
        queries that could look elsewhere, None for a one-token prompt), ``uniform`` (the same for a uniform
        causal pattern), ``last_looks_at`` (the token the last query weighs most and its weight) and
        ``summary_html``.

    Raises:
        ValueError: the prompt is empty or too long, or layer/head is out of range.
    """
    dims = model.model.dims
    layer = check_int("layer", layer, low=0, high=dims.n_layers - 1)
    head = check_int("head", head, low=0, high=dims.n_heads - 1)
    ids, _ = model.encode(prompt)  # [1, T], checked: not empty, fits the context
    tokens = [model.tokenizer.decode([i]) for i in ids[0].tolist()]
    out = model.model.forward(ids, return_patterns=True)
    pattern = out.activations[f"blocks.{layer}.attn.hook_pattern"][0, head]  # [B, H, T, T] -> [T, T]
    T = len(tokens)
    # Query 0 can only look at token 0, so it says nothing about a sink: average over queries 1..T-1.
    sink = float(pattern[1:, 0].mean()) if T > 1 else None
    uniform = sum(1 / (t + 1) for t in range(1, T)) / (T - 1) if T > 1 else None
    key = int(pattern[-1].argmax())
    weight = float(pattern[-1, key])
    words = (f"<b>Layer {layer}, head {head}</b>: "
             + (f"queries put {sink:.2f} of their weight on the first token on average "
                f"(a uniform pattern: {uniform:.2f}); " if sink is not None else "one token, which can only look at itself; ")
             + f"the last token looks most at <code>{html.escape(token_label(tokens[key], 20))}</code> "
               f"(position {key}, weight {weight:.2f}).")
    return {"tokens": tokens, "pattern": pattern, "sink": sink, "uniform": uniform,
            "last_looks_at": (key, weight), "summary_html": words}


def attention_viewer(model, prompt: str = DEFAULT_ATTENTION_PROMPT, layer: int | None = None, head: int = 0):
    """Layer and head sliders and a prompt box over one head's attention heatmap, tokens on both axes.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the initial prompt.
        layer: the initial layer (default: the middle one, where attention sinks are common).
        head: the initial head.

    Returns:
        An ``ipywidgets.VBox``; display it (or leave it as a cell's last value).
    """
    import ipywidgets as widgets

    dims = model.model.dims
    layer = dims.n_layers // 2 if layer is None else check_int("layer", layer, low=0, high=dims.n_layers - 1)
    head = check_int("head", head, low=0, high=dims.n_heads - 1)
    slider = {"continuous_update": False, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    layer_slider = widgets.IntSlider(value=layer, min=0, max=dims.n_layers - 1, description="layer", **slider)
    head_slider = widgets.IntSlider(value=head, min=0, max=dims.n_heads - 1, description="head", **slider)
    prompt_box = prompt_text(widgets, prompt)
    summary = with_class(widgets.HTML(), "anee-attn-summary")
    plot = with_class(widgets.Output(), "anee-attn-plot")

    def update(_change=None):
        try:
            view = attention_view(model, prompt_box.value, layer_slider.value, head_slider.value)
        except ValueError as exc:  # e.g. an empty prompt: say why instead of failing silently in a callback
            summary.value = error_html(exc)
            return
        summary.value = view["summary_html"]
        show_figure(plot, plot_attention_head(view["pattern"], view["tokens"],
                                              f"Layer {layer_slider.value}, head {head_slider.value}"))

    for control in (layer_slider, head_slider, prompt_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, layer_slider, head_slider, summary, plot])
