"""The seed's budget controller: how many layers an ``energy_budget`` buys.

Despite its name, ``energy_budget`` (the seed's API) is a budget of *layers*: a fraction of the
model's depth, with every layer priced the same. It is not measured in joules and does not count
the unembedding, the KV cache or memory traffic; the real cost of a token (multiply-adds, bytes
moved, joules) lives in :mod:`anee_lite.cost`.

The remaining budget starts at ``energy_budget``. Each executed layer costs ``1 / n_layers``
(the remaining budget never goes below 0). Layers with index < ``min_layers`` always run; after
that the forward exits *before* a layer when the remaining budget < ``exit_budget_threshold``.

For a 12-layer model with the defaults (``min_layers=2``, ``exit_budget_threshold=0.1``):

=============  ==============
energy_budget  layers executed
=============  ==============
1.0            11
0.5            5
0.05           2
0.0            2
=============  ==============

With ``exit_budget_threshold=0`` every budget runs all layers. Note that a budget of 1.0 runs
11 of 12 layers, not 12: after 11 layers only 1/12 ~ 0.083 is left, under the 0.1 threshold.
"""

from __future__ import annotations

from .config import DEFAULT_EXIT_BUDGET_THRESHOLD, DEFAULT_MIN_LAYERS
from .core.validation import as_list, check_fraction, check_int

# Budgets are sums of 1/n_layers; compare with a little slack so that 0.5 - 4 * 0.1 counts as 0.1.
_EPS = 1e-9


def budget_exit_layer(n_layers: int, energy_budget: float, min_layers: int = DEFAULT_MIN_LAYERS,
                      exit_budget_threshold: float = DEFAULT_EXIT_BUDGET_THRESHOLD) -> int:
    """Number of layers the seed's controller runs for one forward pass.

    Args:
        n_layers: decoder layers in the model (>= 1).
        energy_budget: starting budget in [0, 1].
        min_layers: layers that always run, in [0, n_layers].
        exit_budget_threshold: exit before a layer once the remaining budget is below this, in [0, 1].

    Returns:
        The number of layers executed. It is 0 only with ``min_layers=0`` and a budget under the
        threshold: the model then predicts from the token embeddings alone.
    """
    n_layers = check_int("n_layers", n_layers, low=1)
    energy_budget = check_fraction("energy_budget", energy_budget)
    min_layers = check_int("min_layers", min_layers, low=0, high=n_layers)
    exit_budget_threshold = check_fraction("exit_budget_threshold", exit_budget_threshold)
    for layer in range(n_layers):
        remaining = max(0.0, energy_budget - layer / n_layers)
        if layer >= min_layers and remaining < exit_budget_threshold - _EPS:
            return layer
    return n_layers


def budget_table(n_layers: int, budgets=(1.0, 0.75, 0.5, 0.25, 0.1, 0.05, 0.0),
                 min_layers: int = DEFAULT_MIN_LAYERS,
                 exit_budget_threshold: float = DEFAULT_EXIT_BUDGET_THRESHOLD) -> list[dict]:
    """Rows ``{"energy_budget", "layers_executed", "fraction"}`` for a range of budgets."""
    rows = []
    for b in as_list("budgets", budgets, "a list of numbers in [0, 1], e.g. [1.0, 0.5]"):
        n = budget_exit_layer(n_layers, b, min_layers, exit_budget_threshold)
        rows.append({"energy_budget": b, "layers_executed": n, "fraction": n / n_layers})
    return rows
