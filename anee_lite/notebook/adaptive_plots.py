"""Plots for notebook 05 (adaptive exit). The only module of this part that imports matplotlib."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_pareto(curves: dict, marks: dict | None = None, title: str = "", ax=None):
    """Agreement against cost fraction, one line per controller (its Pareto front).

    Args:
        curves: label -> list of :class:`~anee_lite.calibration.CurvePoint`.
        marks: label -> (cost_fraction, agreement) points to mark (e.g. calibrated thresholds).
    """
    from ..adaptive.calibration import pareto_front

    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    for label, curve in curves.items():
        front = pareto_front(curve)
        line, = ax.plot([p.cost_fraction for p in front], [p.agreement for p in front], marker=".", label=label)
        if marks and label in marks:
            ax.plot(*marks[label], marker="*", markersize=14, color=line.get_color())
    ax.axvline(0.7, color="grey", lw=0.8, ls=":")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="cost fraction (FLOPs incl. checks and K/V propagation)", ylabel="top-1 agreement with full model",
           title=title, xlim=(0, 1.25), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_lens_per_layer(logit: dict, tuned: dict, axes=None):
    """Two panels: top-1 agreement and KL to the final distribution, per layer, for two lenses.

    Args:
        logit, tuned: outputs of :func:`~anee_lite.tuned_lens.lens_quality`.
    """
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(10, 3.5))[1]
    for stats, label in ((logit, "logit lens"), (tuned, "tuned lens")):
        axes[0].plot(stats["layers"], stats["agreement"], marker="o", label=label)
        axes[1].plot(stats["layers"], stats["kl"], marker="o", label=label)
    axes[0].set(xlabel="layers run", ylabel="top-1 agreement with the output", ylim=(0, 1))
    axes[1].set(xlabel="layers run", ylabel="KL(final || lens), nats", yscale="log")
    axes[0].legend()
    return axes


def plot_exit_heatmap(tokens: list[str], exits: list[int], n_layers: int, allowed: list[int], ax=None):
    """Token x layer grid: a cell is dark where the token ran that layer; ticks mark allowed exits."""
    import numpy as np

    grid = np.array([[1.0 if layer < e else 0.0 for layer in range(n_layers)] for e in exits])  # [T, L]
    ax = ax or plt.subplots(figsize=(min(16, 0.28 * len(tokens) + 2), 4))[1]
    ax.imshow(grid.T, aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1.3)
    ax.set_xticks(range(len(tokens)), [t.replace("\n", "\\n") for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks([l - 0.5 for l in allowed], [str(l) for l in allowed], fontsize=7)
    ax.set(ylabel="layers run (ticks: allowed exits)", title="Layers each token ran")
    return ax


def plot_calibration(rows: list[dict], target: float, ax=None):
    """Bars of agreement reached per controller on calibration, in-domain and out-of-domain text.

    Args:
        rows: dicts with ``label``, ``calibration``, ``in_domain``, ``out_of_domain`` agreements.
    """
    import numpy as np

    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    x = np.arange(len(rows))
    for i, key in enumerate(("calibration", "in_domain", "out_of_domain")):
        ax.bar(x + (i - 1) * 0.27, [r[key] for r in rows], width=0.27, label=key.replace("_", " "))
    ax.axhline(target, color="k", lw=1, ls="--", label=f"target {target}")
    ax.set_xticks(x, [r["label"] for r in rows], rotation=20)
    ax.set(ylabel="top-1 agreement", ylim=(0, 1.05))
    ax.legend(fontsize=8, loc="lower right")
    return ax
