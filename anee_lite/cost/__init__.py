"""What a token costs: multiply-adds, bytes and energy (joules) per part, and measured layer timings.

Not to be confused with the seed's ``energy_budget`` (a fraction of the layers, in :mod:`anee_lite.budget`):
the joules live here.
"""

from .charges import (
    MAC_PARTS,
    CostBreakdown,
    bytes_fraction,
    cost_fraction,
    early_exit_cost,
    full_token_cost,
    generation_report,
    layer_weight_params,
    matrix_params,
    norm_macs,
    propagated_per_token,
    sparse_token_cost,
    token_cost,
)
from .constants import BYTES_PER_PARAM, ENERGY_PER_BYTE_J, ENERGY_PER_FLOP_J
from .speculative import memory_bound_costs
from .timing import (
    decode_step_seconds,
    fit_step_time,
    layer_and_unembed_seconds,
    matmul_flops_and_bytes,
    matmul_seconds,
    step_products_seconds,
)

__all__ = [
    "BYTES_PER_PARAM",
    "ENERGY_PER_BYTE_J",
    "ENERGY_PER_FLOP_J",
    "MAC_PARTS",
    "CostBreakdown",
    "bytes_fraction",
    "cost_fraction",
    "decode_step_seconds",
    "early_exit_cost",
    "fit_step_time",
    "full_token_cost",
    "generation_report",
    "layer_and_unembed_seconds",
    "layer_weight_params",
    "matmul_flops_and_bytes",
    "matmul_seconds",
    "matrix_params",
    "memory_bound_costs",
    "norm_macs",
    "propagated_per_token",
    "sparse_token_cost",
    "step_products_seconds",
    "token_cost",
]
