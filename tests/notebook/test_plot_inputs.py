"""Plot helpers name a wrong argument instead of failing inside matplotlib (or drawing nonsense)."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from anee_lite.core.architectures import ModelDims
from anee_lite.cost import full_token_cost
from anee_lite.notebook.adaptive_exit import plot_lens_per_layer, plot_pareto
from anee_lite.notebook.early_exit_budget import (
    plot_ablation_curves,
    plot_budget_layers,
    plot_head_effects,
    plot_quality_vs_budget,
)
from anee_lite.notebook.gpt2_internals import plot_residual_contributions
from anee_lite.notebook.kv_cache_and_cost import plot_cost_breakdown, plot_time_vs_layers
from anee_lite.notebook.logit_lens import plot_lens_top_k

DIMS = ModelDims("llama", 64, 4, 2, 16, 136, 3, 97, 32)
STATS = {"layers": [1, 2], "agreement": [0.5, 0.8], "kl": [1.0, 0.2]}
ROW = {"energy_budget": 1.0, "layers_executed": 3, "top1_agreement": 1.0, "perplexity": 9.0}


@pytest.mark.parametrize("call,error,match", [
    (lambda: plot_head_effects(torch.rand(3)), ValueError, r"effects must be a \[n_layers, n_heads\] tensor"),
    (lambda: plot_head_effects([[0.1]]), ValueError, "effects must be"),
    (lambda: plot_ablation_curves([0, 1], {"random": [1.0]}, 8), ValueError, "one length"),
    (lambda: plot_ablation_curves([0, 1], {"random": (1.0, 0.5)}, 8), TypeError, "curves"),
    (lambda: plot_time_vs_layers([1, 2, 3], [1.0, 2.0], [1.0, 2.0, 3.0]), ValueError, "one length"),
    (lambda: plot_time_vs_layers([1, 2], [1.0, 2.0], [1.0, 2.0], flops_ms=[1.0]), ValueError, "flops_ms"),
    (lambda: plot_cost_breakdown({"full": {"qkv_o": 1}}), TypeError, "costs must be a non-empty dict"),
    (lambda: plot_cost_breakdown([full_token_cost(DIMS, 4)]), TypeError, "costs"),
    (lambda: plot_pareto({"confidence": [(0.5, 0.9)]}), TypeError, "curves"),
    (lambda: plot_pareto([]), TypeError, "curves"),
    (lambda: plot_lens_per_layer({"layers": [1]}, STATS), ValueError, r"logit lacks \['agreement', 'kl'\]"),
    (lambda: plot_lens_per_layer(STATS, {**STATS, "kl": [1.0]}), ValueError, "one length"),
    (lambda: plot_quality_vs_budget([{"energy_budget": 1.0}]), ValueError, "rows lacks"),
    (lambda: plot_quality_vs_budget([]), TypeError, "rows must be"),
    (lambda: plot_budget_layers(4, 0.5), TypeError, "budgets must be a list"),
    (lambda: plot_budget_layers(4, [0.5, 1.5]), ValueError, "energy_budget"),
    (lambda: plot_lens_top_k(torch.rand(3, 2), [["a", "b"]] * 2, "a"), ValueError, "3 rows of 2 tokens"),
    (lambda: plot_lens_top_k(torch.rand(3), [["a"]] * 3, "a"), ValueError, r"\[rows, k\] tensor"),
    (lambda: plot_residual_contributions({}, 2), ValueError, "activations lacks"),
])
def test_wrong_plot_arguments_name_themselves(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_valid_arguments_still_draw():
    plot_time_vs_layers([1, 2], [1.0, 2.0], [1.1, 2.1], flops_ms=[0.9, 1.9])
    plot_cost_breakdown({"full": full_token_cost(DIMS, 4)})
    plot_lens_per_layer(STATS, STATS)
    plot_quality_vs_budget([ROW, {**ROW, "energy_budget": 0.5}])
    plot_budget_layers(4, (0.0, 0.5, 1.0))
    plot_lens_top_k(torch.rand(3, 2), [["a", "b"]] * 3, "a")


def test_the_head_plots_label_their_axes():
    fig = plot_head_effects(torch.rand(4, 3))
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("head", "layer") and "direct effect" in fig.axes[1].get_ylabel()
    fig = plot_ablation_curves([0, 2, 4], {"a": [1.0, 0.5, 0.2], "b": [1.0, 0.9, 0.1]}, 12)
    ax = fig.axes[0]
    assert "of 12" in ax.get_xlabel() and "agreement" in ax.get_ylabel() and len(ax.get_lines()) == 2
