"""Exit controllers: the interface (:mod:`.base`) and one file per controller, registered by name.

Every module of this folder is imported here, so a controller defined in a new file with
``@register`` is available by name (``make_controller``, ``evaluate``, the CLI) with no other edit.
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
