"""Figures for the notebooks. The only module that imports matplotlib; the core never imports it.

Every function returns a ``matplotlib.figure.Figure`` made with pyplot, so a notebook shows it at
the end of the cell, and a widget can ``display`` it and then ``plt.close`` it.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from torch import Tensor

from ..core.budget import budget_table
from ..core.config import DEFAULT_MIN_LAYERS
from ..core.validation import as_list, check_int
from ..lens import LensResult
from .plot_checks import require_keys


def token_label(text: str, width: int = 10) -> str:
    """A token as a short, visible label: spaces as '·', newlines as '\\n', long ones cut with '…'."""
    text = text.replace(" ", "·").replace("\n", "\\n").replace("\t", "\\t").replace("$", r"\$")
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # other control bytes as \x1d
    return text if len(text) <= width else text[:width - 1] + "…"


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
