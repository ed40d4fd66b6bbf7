"""Notebook 02 (the logit lens): the lens heat map, the top-k readout, the per-layer metrics, and the lens
explorer.

The callback :func:`lens_view` is a plain function of the model and the prompt, tested without a browser;
:func:`lens_explorer` wires it to ipywidgets (7.7 on Colab, and 8).

Widget contract (the browser tests rely on it): a Text described ``prompt``; an HTML widget with the CSS
class ``anee-lens-tokens``; an Output widget with the class ``anee-lens-plot``."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
from torch import Tensor

from ..lens import LensResult, logit_lens
from .parts import error_html, prompt_text, show_figure, token_label, with_class

DEFAULT_LENS_PROMPT = "The Eiffel Tower is in the city of"


def plot_lens_heatmap(lens: LensResult, input_tokens: list[str], top_token_text: list[list[str]],
                      batch: int = 0, max_positions: int = 14) -> plt.Figure:
    """Layer x position grid of the lens's top token; the colour is its probability.

    Args:
        lens: the :func:`anee_lite.lens.logit_lens` result.
        input_tokens: the T input token strings (x axis).
        top_token_text: [L][T] decoded top token at every layer and position.
        batch: which sequence of the batch.
        max_positions: show only the last this-many positions, so long prompts stay legible.
    """
    probs = lens.top_probs[:, batch].float().cpu().numpy()  # [L, T]
    final = lens.top_tokens[-1, batch]  # [T]
    n_rows, T = probs.shape
    first = max(0, T - max_positions)
    shown = range(first, T)
    fig, ax = plt.subplots(figsize=(1.1 * len(shown) + 2.4, 0.3 * n_rows + 1.6))
    image = ax.imshow(probs[:, first:], cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
    for row in range(n_rows):
        for col, t in enumerate(shown):
            is_final = bool(lens.top_tokens[row, batch, t] == final[t])
            ax.text(col, row, token_label(top_token_text[row][t], 8), ha="center", va="center", fontsize=7.5,
                    color="white" if probs[row, t] > 0.55 else "black", fontweight="bold" if is_final else "normal")
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([token_label(input_tokens[t], 10) for t in shown], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(["embed"] + [str(l) for l in range(1, n_rows)], fontsize=7)
    ax.set_xlabel("input token (each column predicts the token after it)")
    ax.set_ylabel("layers run")
    ax.set_title("Logit lens: top prediction after each layer (bold = the final prediction)")
    fig.colorbar(image, ax=ax, fraction=0.04, label="probability of the top token")
    fig.tight_layout()
    return fig


def plot_lens_top_k(probs: Tensor, token_text: list[list[str]], final_text: str, title: str = "") -> plt.Figure:
    """Layer x rank grid of the lens's k most likely next tokens at one position; the colour is the probability.

    Args:
        probs: [rows, k] probabilities of the top k tokens after each layer (row 0 = embeddings), best first.
        token_text: [rows][k] the decoded tokens.
        final_text: the model's final answer; its cells are bold and framed, so you can follow it upwards.
        title: figure title (e.g. the prompt).
    """
    if not isinstance(probs, Tensor) or probs.dim() != 2:
        raise ValueError(f"probs must be a [rows, k] tensor, got {type(probs).__name__}"
                         + (f" of shape {list(probs.shape)}" if isinstance(probs, Tensor) else ""))
    values = probs.float().cpu().numpy()  # [rows, k]
    n_rows, k = values.shape
    if len(token_text) != n_rows or any(len(row) != k for row in token_text):
        raise ValueError(f"token_text must be {n_rows} rows of {k} tokens, like probs, got "
                         f"{[len(row) for row in token_text]}")
    fig, ax = plt.subplots(figsize=(1.35 * k + 2.4, 0.3 * n_rows + 1.6))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
    for row in range(n_rows):
        for col in range(k):
            is_final = token_text[row][col] == final_text
            ax.text(col, row, token_label(token_text[row][col], 9), ha="center", va="center", fontsize=7.5,
                    color="white" if values[row, col] > 0.55 else "black", fontweight="bold" if is_final else "normal",
                    bbox={"fc": "none", "ec": "crimson", "lw": 1.2, "pad": 1.5} if is_final else None)
    ax.set_xticks(range(k))
    ax.set_xticklabels([f"#{r + 1}" for r in range(k)])
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(["embed"] + [str(l) for l in range(1, n_rows)], fontsize=7)
    ax.set_xlabel("rank in the lens's prediction (#1 = most likely next token)")
    ax.set_ylabel("layers run")
    ax.set_title(title or f"Top {k} next tokens after each layer (framed: the final answer {final_text!r})")
    fig.colorbar(image, ax=ax, fraction=0.05, label="probability")
    fig.tight_layout()
    return fig


def plot_lens_metrics(lens: LensResult, batch: int = 0, position: int = -1) -> plt.Figure:
    """KL to the final distribution, rank of the final top token, and entropy, layer by layer.

    Args:
        lens: the :func:`anee_lite.lens.logit_lens` result.
        batch: which sequence of the batch.
        position: which position (default: the last one).
    """
    layers = range(lens.kl_to_final.shape[0])
    series = [
        (lens.kl_to_final[:, batch, position], "KL(final || layer) [nats]", "How far from the final answer", False),
        (lens.final_token_rank[:, batch, position] + 1, "rank of the final top token (1 = top)",
         "Where the final answer ranks", True),
        (lens.entropy[:, batch, position], "entropy [nats]", "How unsure the prediction is", False),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (values, ylabel, title, log) in zip(axes, series):
        ax.plot(layers, values.float().cpu().numpy(), "-o", ms=3)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("layers run (0 = embeddings)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_patching(restored: Tensor, tokens: list[str], title: str = "") -> plt.Figure:
    """Activation patching's map: share of the clean logit difference restored per (layer, position).

    Args:
        restored: [n_layers, T] from :func:`anee_lite.interventions.patching_sweep` (1 = the clean answer back).
        tokens: the T tokens of the corrupted prompt, for the x axis.
        title: the figure's title.
    """
    if not isinstance(restored, Tensor) or restored.dim() != 2:
        raise TypeError(f"restored must be a [n_layers, positions] tensor, got "
                        f"{list(restored.shape) if isinstance(restored, Tensor) else type(restored).__name__}")
    if not isinstance(tokens, (list, tuple)) or len(tokens) != restored.shape[1]:
        raise ValueError(f"tokens must list the {restored.shape[1]} positions of restored, got "
                         f"{len(tokens) if isinstance(tokens, (list, tuple)) else type(tokens).__name__}")
    values = restored.float().cpu()
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * values.shape[1], 0.5 + 0.18 * values.shape[0]))
    image = ax.imshow(values.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels([token_label(t, 10) for t in tokens], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("position (token) whose residual is patched")
    ax.set_ylabel("layer (residual entering it)")
    ax.set_title(title or "Share of the clean logit difference restored by patching one residual")
    fig.colorbar(image, ax=ax, label="restored (1 = clean answer, 0 = corrupted)")
    fig.tight_layout()
    return fig


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


def lens_explorer(model, prompt: str = DEFAULT_LENS_PROMPT):
    """A prompt box whose logit-lens heatmap and token list redraw when the prompt is submitted.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: the initial prompt.

    Returns:
        An ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets

    prompt_box = prompt_text(widgets, prompt)
    tokens_html = with_class(widgets.HTML(), "anee-lens-tokens")
    plot = with_class(widgets.Output(), "anee-lens-plot")

    def update(_change=None):
        try:
            view = lens_view(model, prompt_box.value)
        except ValueError as exc:
            tokens_html.value = error_html(exc)
            return
        tokens_html.value = view["tokens_html"]

        show_figure(plot, plot_lens_heatmap(view["lens"], view["tokens"], view["top_text"]))

    prompt_box.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, tokens_html, plot])
