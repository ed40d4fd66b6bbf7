"""Computing less by switching parts off: layers, attention heads, MLP neurons, small activations.

The masks themselves live in the forward (:meth:`anee_lite.core.model.UnrolledModel.forward`:
``skip_layers``, ``head_mask``, ``mlp_mask``, ``activation_sparsity``). This package chooses what
to switch off (importance scores from ShortGPT, Michel et al. and Wanda), calibrates activation
thresholds (TEAL/CATS), builds physically smaller models (:func:`prune`) and measures quality
against cost (:mod:`anee_lite.sparsity.evaluate`).

It sits beside :mod:`anee_lite.adaptive` (both build on core, io, lens and cost): neither needs the
other, and the wrapper and notebooks above use both.
"""

from .calibrate import calibrate_activation_thresholds
from .prune import prune
from .scores import block_influence, head_importance, neuron_importance
from .select import head_mask_from_scores, layers_to_skip, mlp_mask_from_scores

__all__ = [
    "block_influence",
    "calibrate_activation_thresholds",
    "head_importance",
    "head_mask_from_scores",
    "layers_to_skip",
    "mlp_mask_from_scores",
    "neuron_importance",
    "prune",
]
