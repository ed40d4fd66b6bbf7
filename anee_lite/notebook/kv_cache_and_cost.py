"""Notebook 04 (KV cache and cost): the lazy cache's grid, where a token's cost goes, time against layers."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ..cost import MAC_PARTS, CostBreakdown
from .parts import check_exit_list, require_items, require_same_length

COMPUTED, PROPAGATED, NOT_NEEDED = 2, 1, 0
GRID_COLOURS = ["#eeeeee", "#f4a261", "#2a6f97"]  # not needed, propagated, computed
PART_LABELS = {  # the cost model's parts, in words a legend can show
    "qkv_o": "attention projections (Q, K, V, O)",
    "attn_scores": "attention over the context",
    "mlp": "MLP",
    "norms": "norms",
    "lm_head": "unembedding",
    "kv_propagation": "K/V filled for exited tokens",
    "exit_checks": "exit decisions (lens or probe checks)",
}


def kv_grid(exit_layers: list[int], n_layers: int) -> list[list[int]]:
    """[n_layers][T] cell kinds: the token ran the layer, got its K/V there by propagation, or neither yet.

    With lazy propagation a layer is filled for an exited token only once a *later* token runs it.
    """
    exit_layers = check_exit_list(exit_layers, n_layers)
    grid = []
    for layer in range(n_layers):
        row = []
        for t, exit_layer in enumerate(exit_layers):
            if layer < exit_layer:
                row.append(COMPUTED)
            elif any(later > layer for later in exit_layers[t + 1:]):
                row.append(PROPAGATED)
            else:
                row.append(NOT_NEEDED)
        grid.append(row)
    return grid


def plot_kv_grid(exit_layers: list[int], n_layers: int, tokens: list[str] | None = None, ax=None):
    """Tokens x layers: where each token's keys/values come from (ran the layer, or propagated)."""
    exit_layers = check_exit_list(exit_layers, n_layers, tokens)
    grid = kv_grid(exit_layers, n_layers)
    T = len(exit_layers)
    ax = ax or plt.subplots(figsize=(max(5, 0.55 * T + 2), max(3, 0.16 * n_layers + 1.5)))[1]
    ax.imshow(grid, origin="lower", aspect="auto", cmap=ListedColormap(GRID_COLOURS), vmin=0, vmax=2,
              interpolation="nearest")
    ax.plot(range(T), [e - 0.5 for e in exit_layers], "k_", markersize=14, mew=2)  # where each token stopped
    ax.set_xticks(range(T), tokens if tokens is not None else [str(t) for t in range(T)],
                  rotation=60 if tokens is not None else 0, fontsize=8)
    ax.set(xlabel="token", ylabel="layer", title="Keys/values per (token, layer)")
    labels = ["computed: the token ran this layer", "propagated from its frozen residual",
              "not needed yet: no later token ran this layer"]
    ax.legend(handles=[Patch(color=GRID_COLOURS[k], label=labels[2 - k]) for k in (COMPUTED, PROPAGATED, NOT_NEEDED)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return ax


def plot_cost_breakdown(costs: dict[str, CostBreakdown], ax=None):
    """Stacked bars of FLOPs per part, one bar per label (e.g. full depth and a few exits)."""
    require_items("costs", costs, CostBreakdown)
    ax = ax or plt.subplots(figsize=(8, 0.6 * len(costs) + 1.6))[1]
    labels = list(costs)
    left = [0.0] * len(labels)
    for part in MAC_PARTS:
        widths = [2 * getattr(costs[label], part) / 1e6 for label in labels]  # MFLOPs
        if any(widths):
            ax.barh(labels, widths, left=left, label=PART_LABELS[part])
            left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set(xlabel="MFLOPs per token", ylabel="exit depth", title="Where one decoding token's FLOPs go")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    return ax


def plot_time_vs_layers(layers: list[int], measured_ms: list[float], fit_ms: list[float],
                        flops_ms: list[float] | None = None, ax=None):
    """Milliseconds per decoding step against layers run: measured, the line fitted through them, and FLOPs.

    Args:
        layers: exit depths.
        measured_ms: median step time at each depth.
        fit_ms: ``fixed + L * per_layer`` from :func:`anee_lite.cost.fit_step_time` at each depth.
        flops_ms: the full-depth step scaled by each depth's FLOPs share: what time would be if it followed FLOPs.
    """
    require_same_length(layers=layers, measured_ms=measured_ms, fit_ms=fit_ms,
                        **({} if flops_ms is None else {"flops_ms": flops_ms}))
    ax = ax or plt.subplots(figsize=(6.5, 3.8))[1]
    ax.plot(layers, measured_ms, "o", ms=7, label="measured (median decoding step)")
    ax.plot(layers, fit_ms, "--", label="fitted line: fixed part + L x time per layer")
    if flops_ms is not None:
        ax.plot(layers, flops_ms, ":", color="grey", label="full step x share of the FLOPs")
    ax.set(xlabel="layers run per token (static exit)", ylabel="ms per token", ylim=(0, None),
           xlim=(0, None), title="Time per decoding token against depth")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
