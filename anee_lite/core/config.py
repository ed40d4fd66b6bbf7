"""The seed's configuration object, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from .validation import check_device, check_fraction, check_int


@dataclass
class ANEEConfig:
    """Settings of :class:`anee_lite.ANEEWrapper`; every call may override the budget knobs."""

    model_name: str = "gpt2"  # hub id, local folder, or the offline alias "smollm2-135m"
    energy_budget: float = 1.0  # starting budget in [0, 1]; each layer spends 1/n_layers
    min_layers: int = 2  # layers that always run, whatever the budget (<= the model's n_layers)
    exit_budget_threshold: float = 0.1  # exit before a layer once the remaining budget is below this
    device: str = "cpu"  # where the model runs: "cpu", "cuda", "mps"

    def __post_init__(self):
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError(f"model_name must be a non-empty string, got {self.model_name!r}")
        self.energy_budget = check_fraction("energy_budget", self.energy_budget)
        self.min_layers = check_int("min_layers", self.min_layers, low=0)
        self.exit_budget_threshold = check_fraction("exit_budget_threshold", self.exit_budget_threshold)
        check_device("device", self.device)
