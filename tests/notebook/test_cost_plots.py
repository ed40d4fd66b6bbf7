"""Notebook 04's plots: every axis labelled, legends in words (not the cost model's field names)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from anee_lite.core.architectures import ModelDims
from anee_lite.cost import MAC_PARTS, token_cost
from anee_lite.notebook.cost_plots import PART_LABELS, plot_cost_breakdown, plot_kv_grid, plot_time_vs_layers

DIMS = ModelDims(architecture="llama", d_model=8, n_heads=2, n_kv_heads=1, d_head=4, d_mlp=16, n_layers=4,
                 d_vocab=10, n_ctx=32)


def test_cost_plots_are_labelled_in_words():
    costs = {f"{L} layers": token_cost(DIMS, layers_run=L, context_len=8, lens_checks=1, kv_propagated=2)
             for L in (4, 2)}
    axes = [plot_cost_breakdown(costs), plot_time_vs_layers([2, 4], [1.0, 2.0], [1.1, 1.9], [1.0, 2.0]),
            plot_kv_grid([4, 1, 4], 4, ["a", "b", "c"])]
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert set(PART_LABELS) == set(MAC_PARTS)
    assert "unembedding" in legend and not {"lm_head", "qkv_o", "attn_scores"} & set(legend)
    plt.close("all")
