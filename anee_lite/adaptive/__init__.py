"""Adaptive exit: controllers that decide per token, the exit probe, calibration and evaluation."""

from .calibration import build_replay, calibrate, pareto_front, sweep, text_chunks
from .controllers import CONTROLLER_NAMES, ExitController, controller_names, make_controller, register
from .evaluate import build_controller, evaluate, quality_vs_budget
from .probe import ExitProbe, train_probe
from .speculative import acceptance_by_depth

__all__ = [
    "CONTROLLER_NAMES",
    "ExitController",
    "ExitProbe",
    "acceptance_by_depth",
    "build_controller",
    "build_replay",
    "calibrate",
    "controller_names",
    "evaluate",
    "make_controller",
    "pareto_front",
    "quality_vs_budget",
    "register",
    "sweep",
    "text_chunks",
    "train_probe",
]
