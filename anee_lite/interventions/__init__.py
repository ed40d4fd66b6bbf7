"""Interventions on the forward pass through its hooks (:mod:`anee_lite.core.hooks`): ablation and activation patching.

Ablation asks what breaks without a head, a neuron or a layer; patching asks which activation carries an
answer. Both are the bridge from watching the model (the logit lens) to skipping its work: what can be
removed or patched without changing the answer need not be computed.
"""

from .ablation import ablate_heads, ablate_layers, ablate_neurons, mean_activations, record, run_and_record
from .attribution import ablation_curve, head_direct_effects, heads_in_order, per_head_effects
from .patching import logit_difference, patch, patching_sweep

__all__ = ["ablate_heads", "ablate_layers", "ablate_neurons", "ablation_curve", "head_direct_effects", "heads_in_order",
           "logit_difference", "mean_activations", "patch", "patching_sweep", "per_head_effects", "record",
           "run_and_record"]
