"""What every benchmark records about the machine, and the rule for shipped results: measured quiet, or not shipped.

A benchmark's own threads raise the load while it runs, so the load that counts is the one before it starts.
"""

from __future__ import annotations

import os
import platform

import torch

QUIET_LOAD = 1.0  # 1-minute load average on this project's 2-core machines below which a run counts as quiet


def machine() -> dict:
    """The processor, torch's thread count and the 1/5/15-minute load averages now."""
    return {"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            "load_before": list(os.getloadavg())}


def refuse_unless_quiet(load_before: list[float], shipped: bool, force: bool) -> None:
    """Exit (status 2) before a run that would overwrite shipped results from a busy machine."""
    if shipped and load_before[0] > QUIET_LOAD and not force:
        raise SystemExit(f"the 1-minute load is {load_before[0]:.2f} (> {QUIET_LOAD}): a run now would not be quiet, "
                         "so it may not overwrite the shipped results. Stop other jobs and rerun, write elsewhere "
                         "(--json or --out), or pass --force to record it anyway (the load is stored with the results).")
