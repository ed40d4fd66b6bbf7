"""Exit controllers: the interface (:mod:`.base`) and one file per controller, registered by name.

==========  ============================================  ==========================================
name        score (threshold-free, per token and layer)   what one check costs
==========  ============================================  ==========================================
static      the layer index (exit once ``layer >= k``)    nothing
confidence  top-1 probability under the lens              one lens (final norm + unembedding)
margin      top-1 minus top-2 probability under the lens  one lens
entropy     entropy (nats) of the lens distribution       one lens (rule: ``score <= threshold``)
saturation  cosine between this residual and the last     three d_model-long reductions
patience    consecutive checks with the same lens top-1   one lens
learned     a probe's P(lens top-1 is already final)      the probe's features and dot product
==========  ============================================  ==========================================

A lens check that lets a token stop has computed that token's output logits: the forward reuses
them and the cost model does not charge a second unembedding. Every module of this folder is
imported here, so a controller defined in a new file with ``@register`` is available by name
(``make_controller``, ``evaluate``, the CLI) with no other edit.
"""

import importlib
import pkgutil

from .base import (
    REGISTRY,
    ExitController,
    LensController,
    RemembersPrevious,
    controller_class,
    controller_names,
    make_controller,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

CONTROLLER_NAMES = controller_names()  # the library's controllers, for argparse choices and tables

__all__ = [
    "CONTROLLER_NAMES",
    "REGISTRY",
    "ExitController",
    "LensController",
    "RemembersPrevious",
    "controller_class",
    "controller_names",
    "make_controller",
    "register",
]
