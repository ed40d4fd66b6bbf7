"""Notebook 04's plots: every axis labelled, legends in words (not the cost model's field names)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from anee_lite.core.architectures import ModelDims
from anee_lite.cost import MAC_PARTS, token_cost
from anee_lite.notebook.kv_cache_and_cost import PART_LABELS, plot_cost_breakdown, plot_kv_grid, plot_time_vs_layers

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


def test_wrong_exit_lists_are_refused_before_drawing():
    from anee_lite.notebook.adaptive_exit import plot_exit_heatmap
    from anee_lite.notebook.kv_cache_and_cost import kv_grid

    assert kv_grid(torch.tensor([2, 1]), 2) == kv_grid([2, 1], 2)  # one sequence's [T] tensor is fine
    cases = [
        (lambda: kv_grid([1, 5, 3], 4), "exit_layers entries must be in \\[0, 4\\]"),  # was drawn as 4
        (lambda: plot_kv_grid(torch.tensor([[1, 2, 3]]), 4), "stats.exit_layers\\[0\\]"),  # was a raw RuntimeError
        (lambda: plot_kv_grid([1, 2, 3], 4, ["a"]), "tokens must hold one label per exit layer"),
        (lambda: plot_exit_heatmap(["a"], [1, 2, 3], 4, [1, 2]), "tokens must hold one label"),  # was drawn
        (lambda: plot_exit_heatmap(["a", "b"], [1, 7], 4, [1, 2]), "exit_layers entries"),  # was drawn as 4
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    plt.close("all")


def test_attention_and_gauge_plots_refuse_wrong_shapes():
    from anee_lite.notebook.early_exit_budget import plot_layers_executed
    from anee_lite.notebook.gpt2_internals import plot_attention_patterns

    pattern = torch.rand(1, 2, 3, 3)  # a hook_pattern [B, H, T, T]: its [H, T, T] was drawn as an RGB image
    with pytest.raises(ValueError, match="pattern must be one layer's \\[H, T, T\\]"):
        plot_attention_patterns(pattern, ["a", "b", "c"])
    with pytest.raises(ValueError, match="tokens must hold the pattern's 3"):
        plot_attention_patterns(pattern[0], ["a"])
    with pytest.raises(ValueError, match="layers_executed must be in \\[0, 4\\]"):  # 9/4 was drawn as full
        plot_layers_executed(9, 4)
    plot_attention_patterns(pattern[0], ["a", "b", "c"])
    plt.close("all")
