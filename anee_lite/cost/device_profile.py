"""What a device profile is: :class:`DeviceProfile`, its units, and the energy rules the shipped profiles share.

Each shipped device is one file in :mod:`anee_lite.cost.profiles`; a user's device is one JSON or YAML file
read by :func:`anee_lite.cost.devices.load_profile`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

from .constants import COMPUTE_DTYPE, COMPUTE_DTYPES, DTYPES, HOROWITZ_45NM_J_PER_FLOP, PJ

GB, GiB, MiB, TERA, GIGA = 1e9, 2**30, 2**20, 1e12, 1e9


def scaled_flop_energy(node_nm: float) -> dict[str, float]:
    """Horowitz's 45 nm energy per FLOP, scaled linearly to a process node (a first-order estimate)."""
    return {k: v * node_nm / 45 for k, v in HOROWITZ_45NM_J_PER_FLOP.items()}


def pj_per_bit(pj: float) -> float:
    """Joules per byte from picojoules per bit."""
    return pj * 8 * PJ


@dataclass(frozen=True)
class DeviceProfile:
    """One device, as the simulator sees it. Units are SI: FLOP/s, bytes/s, bytes, seconds, joules, watts."""

    name: str  # short id used by the CLI (``--device NAME``)
    description: str  # one line for ``--list-devices``
    peak_flops: dict  # {"fp32", "fp16", "int8"} -> dense peak FLOP/s (int8: ops/s); no structured-sparsity 2x
    memory_bandwidth: float  # peak DRAM/HBM bandwidth, bytes/s
    memory_bytes: float  # memory capacity, bytes (a model bigger than this does not fit)
    cache_bytes: float  # largest on-chip cache or SRAM (L2/SLC/L3), bytes
    op_overhead_s: float  # fixed cost of every framework operator dispatch / kernel launch, seconds
    matmul_overhead_s: float  # extra fixed cost of each matrix product (CPU thread fork/join), seconds
    joules_per_flop: dict  # {"fp32", "fp16", "int8"} -> J per FLOP (dynamic arithmetic energy)
    joules_per_byte: float  # J per byte moved to or from DRAM/HBM
    idle_watts: float  # static power paid for every second a step takes, W
    compute_efficiency: float = 0.7  # share of peak FLOP/s that real matrix kernels reach
    bandwidth_efficiency: float = 0.8  # share of peak bandwidth that streaming kernels reach
    # (rows, share) pairs: the share of the achievable FLOP/s a product over that many rows reaches (a CPU's
    # BLAS runs a short prompt's [rows, in] @ [in, out] well below its large-product rate); interpolated in
    # log(rows), held at the ends. Empty: every product reaches the achievable rate.
    rows_efficiency: tuple = ()
    # (rows, factor) pairs: a product over that many rows takes ``factor`` times a one-row product's weight-streaming
    # time, arithmetic or not (a CPU does not hide a few rows' multiply-adds behind the weight reads: two rows cost
    # ~1.35 one here). Interpolated in log(rows) from 1 at one row, held at the last pair. Empty: a few rows are
    # as cheap as one while reading the weights bounds them (a GPU's case).
    few_rows_slowdown: tuple = ()
    # Share of the achievable FLOP/s that attention reaches (q @ k.T, softmax, @ v in one kernel): a CPU's fused
    # attention over a long prompt runs well below its large matrix products, and its cost grows with the prompt's square.
    attention_efficiency: float = 1.0
    measured: bool = False  # True when the numbers come from a micro-benchmark on this machine
    validated: bool = False  # True when predicted decode times were checked against measured ones
    sources: dict = field(default_factory=dict)  # field name -> where its number comes from

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise TypeError(f"a device profile's name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise TypeError(f"{self.name}.description must be a string, got {self.description!r}")
        for name in ("measured", "validated"):  # "no" would read as True
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{self.name}.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.sources, dict) or not all(isinstance(v, str) for v in self.sources.values()):
            raise TypeError(f"{self.name}.sources must map field names to where each number comes from (strings), "
                             f"got {self.sources!r}")
        for name in ("memory_bandwidth", "memory_bytes", "cache_bytes", "joules_per_byte"):
            _check_positive(f"{self.name}.{name}", getattr(self, name))
        for name in ("op_overhead_s", "matmul_overhead_s", "idle_watts"):
            _check_positive(f"{self.name}.{name}", getattr(self, name), allow_zero=True)
        for name in ("compute_efficiency", "bandwidth_efficiency", "attention_efficiency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{self.name}.{name} must be in (0, 1], got {value!r}")
        object.__setattr__(self, "rows_efficiency", _check_row_table(
            self.name, "rows_efficiency", self.rows_efficiency, min_rows=1, noun="share", rule="must be in (0, 1]",
            allowed=lambda s: 0 < s <= 1))
        object.__setattr__(self, "few_rows_slowdown", _check_row_table(
            self.name, "few_rows_slowdown", self.few_rows_slowdown, min_rows=2, noun="factor",
            rule="must be finite numbers >= 1", allowed=lambda f: 1 <= f < math.inf))
        for name in ("peak_flops", "joules_per_flop"):
            table = getattr(self, name)
            if not isinstance(table, dict) or set(table) != set(COMPUTE_DTYPES):
                raise ValueError(f"{self.name}.{name} must map exactly {list(COMPUTE_DTYPES)} to numbers, got {table!r}")
            for dtype, value in table.items():
                _check_positive(f"{self.name}.{name}[{dtype!r}]", value)

    def flops_per_second(self, dtype: str) -> float:
        """Achievable FLOP/s for weights of ``dtype`` (peak x compute_efficiency)."""
        return self.peak_flops[COMPUTE_DTYPE[check_dtype(dtype)]] * self.compute_efficiency

    def rows_share(self, rows: int) -> float:
        """The share of :meth:`flops_per_second` a matrix product over ``rows`` positions reaches (1 without a table)."""
        table = self.rows_efficiency
        if not table or rows <= 0:
            return 1.0
        if rows <= table[0][0]:
            return table[0][1]
        for (r0, s0), (r1, s1) in itertools.pairwise(table):
            if rows <= r1:
                t = math.log(rows / r0) / math.log(r1 / r0)
                return s0 + t * (s1 - s0)
        return table[-1][1]

    def memory_slowdown(self, rows: int) -> float:
        """How many times a one-row product's weight-streaming time a product over ``rows`` rows takes (>= 1)."""
        if rows <= 1 or not self.few_rows_slowdown:  # every op of a plan asks: most are one row
            return 1.0
        table = ((1, 1.0), *self.few_rows_slowdown)
        for (r0, f0), (r1, f1) in itertools.pairwise(table):
            if rows <= r1:
                return f0 + math.log(rows / r0) / math.log(r1 / r0) * (f1 - f0)
        return table[-1][1]

    def bytes_per_second(self) -> float:
        """Achievable memory bandwidth (peak x bandwidth_efficiency)."""
        return self.memory_bandwidth * self.bandwidth_efficiency

    def as_dict(self) -> dict:
        """Plain JSON-ready fields (what :func:`profile_from_dict` reads back)."""
        return asdict(self)


def _check_row_table(device: str, field: str, table, *, min_rows: int, noun: str, rule: str, allowed) -> tuple:
    """(rows, value) pairs with rows increasing integers >= ``min_rows`` and ``allowed(value)``, as a tuple of tuples.

    ``noun`` and ``rule`` word the messages, e.g. "share" and "must be in (0, 1]".
    """
    try:
        pairs = tuple((r, v) for r, v in table)
    except (TypeError, ValueError):
        raise ValueError(f"{device}.{field} must be (rows, {noun}) pairs, got {table!r}") from None
    for i, (r, v) in enumerate(pairs):
        if isinstance(r, bool) or not isinstance(r, int) or r < min_rows or (i and r <= pairs[i - 1][0]):
            raise ValueError(f"{device}.{field} rows must be increasing integers >= {min_rows}, got {table!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not allowed(v):
            raise ValueError(f"{device}.{field} {noun}s {rule}, got {table!r}")
    return pairs


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


def check_dtype(dtype: str) -> str:
    """A weight dtype the simulator knows."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return dtype
