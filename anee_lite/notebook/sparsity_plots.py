"""Plots for notebook 06 (sparsity). Imports matplotlib, so only the notebook layer has it."""

from __future__ import annotations

import matplotlib.pyplot as plt

MARKERS = {"static exit": "o", "layer skipping": "s", "head pruning": "^", "neuron pruning": "v",
           "activation sparsity": "D", "combination": "*"}


def plot_sparsity_pareto(results: dict, text: str = "python_docs_heldout", ax=None):
    """Top-1 agreement against FLOPs fraction, one marker per lever, one point per reached cost point."""
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    for lever, marker in MARKERS.items():
        rows = sorted((r for r in results["rows"] if r["lever"] == lever and r["reached"]),
                      key=lambda r: r["flops_fraction"])
        if rows:
            ax.plot([r["flops_fraction"] for r in rows], [r[text]["agreement"] for r in rows], marker=marker,
                    markersize=9 if marker == "*" else 6, label=lever)
    ax.plot([1.0], [1.0], marker="P", color="black", ls="", label="full model")
    where = "in domain: Python docs" if text.startswith("python") else "out of domain: King James Bible"
    ax.set(xlabel="FLOPs per decoding token (fraction of the full model)", ylabel="top-1 agreement with full model",
           title=f"Which lever keeps the most at equal cost ({where})", ylim=(0, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax
