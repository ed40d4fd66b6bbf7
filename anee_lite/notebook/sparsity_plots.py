"""Plots for notebook 06 (sparsity). Imports matplotlib, so only the notebook layer has it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from .plot_checks import require_keys

MARKERS = {"static exit": "o", "layer skipping": "s", "head pruning": "^", "neuron pruning": "v",
           "activation sparsity": "D", "combination": "*"}
TEXT_NAMES = {"python_docs_heldout": "in domain: Python docs", "kjv_heldout": "out of domain: King James Bible"}


def _vector(name: str, values) -> Tensor:
    if not isinstance(values, Tensor) or values.dim() != 1 or values.numel() == 0:
        raise TypeError(f"{name} must be a non-empty 1-d tensor, got "
                        f"{type(values).__name__}{list(values.shape) if isinstance(values, Tensor) else ''}")
    return values.detach().float().cpu()


def plot_block_influence(influence: Tensor, skipped=(), ax=None):
    """Block Influence per layer as bars; the layers in ``skipped`` drawn in another colour."""
    influence = _vector("influence", influence)
    skipped = set(skipped)
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    colours = ["tab:red" if layer in skipped else "tab:blue" for layer in range(influence.numel())]
    ax.bar(range(influence.numel()), influence.tolist(), color=colours)
    ax.set_yscale("log")
    ax.set(xlabel="layer", ylabel="Block Influence\n1 - mean cos(in, out)",
           title="How much each block turns the residual stream" + (" (red: skipped first)" if skipped else ""))
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_quality_curves(curves: dict, xlabel: str, title: str = "", ax=None):
    """Top-1 agreement with the full model against a knob, one line per way of choosing what goes.

    Args:
        curves: label -> list of (knob value, agreement) pairs.
        xlabel: what the knob is.
    """
    if not isinstance(curves, dict) or not curves or not all(
            isinstance(c, list) and c and all(isinstance(p, tuple) and len(p) == 2 for p in c) for c in curves.values()):
        raise TypeError("curves must be a non-empty dict of label -> non-empty list of (x, agreement) pairs")
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, points in curves.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="90% agreement")
    ax.set(xlabel=xlabel, ylabel="top-1 agreement\nwith the full model", title=title, ylim=(0, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_head_importance(scores: Tensor, n_kv_heads: int, mask: Tensor | None = None, ax=None):
    """Layer x head grid of head importance; white lines between key/value groups, x on the heads ``mask`` removes."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise TypeError(f"scores must be a [n_layers, n_heads] tensor, got {type(scores).__name__}")
    n_layers, n_heads = scores.shape
    if mask is not None and tuple(mask.shape) != (n_layers, n_heads):
        raise ValueError(f"mask must have the shape of scores {[n_layers, n_heads]}, got {list(mask.shape)}")
    ax = ax or plt.subplots(figsize=(4.5, 7))[1]
    image = ax.imshow(scores.detach().float().cpu().numpy(), aspect="auto", cmap="viridis")
    group = n_heads // n_kv_heads
    for g in range(1, n_kv_heads):
        ax.axvline(g * group - 0.5, color="white", lw=2)
    if mask is not None:
        layers, heads = (mask == 0).nonzero(as_tuple=True)
        ax.plot(heads.tolist(), layers.tolist(), "x", color="red", markersize=5, label="removed")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel=f"query head ({n_kv_heads} key/value groups of {group})", ylabel="layer",
           title="Head importance (Michel et al.)", xticks=range(n_heads))
    plt.colorbar(image, ax=ax, fraction=0.05, label="normalised |dL/d gate|")
    return ax


def plot_activation_magnitudes(values: Tensor, thresholds: dict, title: str = "", ax=None):
    """Histogram of |activation| with a vertical line per labelled threshold (e.g. the 50% one)."""
    values = _vector("values", values.flatten() if isinstance(values, Tensor) else values)
    if not isinstance(thresholds, dict):
        raise TypeError(f"thresholds must be a dict label -> magnitude, got {type(thresholds).__name__}")
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    magnitude = values.abs().clamp(min=1e-6)
    bins = torch.logspace(-4, float(magnitude.max().log10()) + 0.05, 60)
    ax.hist(magnitude.numpy(), bins=bins.numpy(), color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    for (label, value), colour in zip(thresholds.items(), ["tab:orange", "tab:red", "tab:purple", "tab:green"]):
        ax.axvline(float(value), color=colour, lw=1.5, label=label)
    ax.set(xlabel="|activation| (log scale)", ylabel="entries", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_sparsity_pareto(results: dict, text: str = "python_docs_heldout", ax=None):
    """Top-1 agreement against FLOPs fraction, one marker per lever, one point per reached cost point."""
    require_keys("results", results, ["rows"])
    if text not in TEXT_NAMES:
        raise ValueError(f"text must be one of {list(TEXT_NAMES)}, got {text!r}")
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    for lever, marker in MARKERS.items():
        rows = sorted((r for r in results["rows"] if r["lever"] == lever and r["reached"]),
                      key=lambda r: r["flops_fraction"])
        if rows:
            ax.plot([r["flops_fraction"] for r in rows], [r[text]["agreement"] for r in rows], marker=marker,
                    markersize=9 if marker == "*" else 6, label=lever)
    ax.plot([1.0], [1.0], marker="P", color="black", ls="", label="full model")
    ax.set(xlabel="FLOPs per decoding token (fraction of the full model)", ylabel="top-1 agreement with full model",
           title=f"Which lever keeps the most at equal cost\n({TEXT_NAMES[text]})", ylim=(0, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax
