"""The seed's configuration object (``from anee_lite.config import ANEEConfig``, ANEE v0.0.1's path), checked
when it is made, and the budget defaults it shares with :mod:`anee_lite.budget`."""

from __future__ import annotations

from dataclasses import dataclass

from .core.validation import check_device, check_fraction, check_int

# The seed's budget controller defaults, used by every function that takes these knobs.
DEFAULT_MIN_LAYERS = 2  # the seed's value: the first two layers always run, whatever the budget
DEFAULT_EXIT_BUDGET_THRESHOLD = 0.1  # stop once less than a tenth of the budget is left (the seed's value)


@dataclass
class ANEEConfig:
    """Settings of :class:`anee_lite.ANEEWrapper`; every call may override the budget knobs."""

    model_name: str = "gpt2"  # hub id, local folder, or the offline alias "smollm2-135m"
    # The seed's *layer* budget in [0, 1], not joules: each layer spends 1/n_layers of it. Real energy
    # (multiply-adds, bytes moved, joules per token) is computed by anee_lite.cost.
    energy_budget: float = 1.0
    min_layers: int = DEFAULT_MIN_LAYERS  # layers that always run, whatever the budget (<= n_layers)
    exit_budget_threshold: float = DEFAULT_EXIT_BUDGET_THRESHOLD  # exit before a layer once less is left
    device: str = "cpu"  # where the model runs: "cpu", "cuda", "mps"

    def __post_init__(self):
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError(f"model_name must be a non-empty string, got {self.model_name!r}")
        self.energy_budget = check_fraction("energy_budget", self.energy_budget)
        self.min_layers = check_int("min_layers", self.min_layers, low=0)
        self.exit_budget_threshold = check_fraction("exit_budget_threshold", self.exit_budget_threshold)
        check_device("device", self.device)
