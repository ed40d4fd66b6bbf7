"""Adaptive exit: controllers that decide per token, the exit probe, calibration and evaluation."""

from .calibration import build_replay, calibrate, pareto_front, sweep, text_chunks
from .controllers import CONTROLLER_NAMES, ExitController, controller_names, make_controller, register
from .evaluate import build_controller, evaluate, quality_vs_budget
from .guarantee import clopper_pearson_lower, fixed_sequence_select
from .probe import ExitProbe, train_probe
from .real_calibration import DecodedCalibration, agreement_by_exit_history, calibrate_by_decoding, measure_thresholds
from .speculative import acceptance_by_depth

__all__ = [
    "CONTROLLER_NAMES",
    "DecodedCalibration",
    "ExitController",
    "ExitProbe",
    "acceptance_by_depth",
    "agreement_by_exit_history",
    "build_controller",
    "build_replay",
    "calibrate",
    "calibrate_by_decoding",
    "clopper_pearson_lower",
    "controller_names",
    "evaluate",
    "fixed_sequence_select",
    "make_controller",
    "measure_thresholds",
    "pareto_front",
    "quality_vs_budget",
    "register",
    "sweep",
    "text_chunks",
    "train_probe",
]
