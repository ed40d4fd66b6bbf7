"""Notebook 01 (GPT-2 internals): attention patterns, softmax saturation, what each block adds to the residual.

Every plot returns a ``matplotlib.figure.Figure`` made with pyplot, so a notebook shows it at the end of the
cell."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from torch import Tensor

from ..core.validation import check_int
from .parts import require_keys, token_label


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
