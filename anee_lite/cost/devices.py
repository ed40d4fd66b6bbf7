"""Device profiles for the virtual accelerator: what one chip can compute and move, and what it costs in joules.

A :class:`DeviceProfile` is the written interface: every field has a unit, and every shipped
number says where it comes from in ``sources`` (a vendor datasheet, a paper, or "estimate" with
the reasoning). Adding a device is one entry in :data:`PROFILES` plus its test, or, for a user,
one small JSON/YAML file passed to :func:`load_profile` (or ``--device path.json`` on the CLI).

The numbers are *peaks* from datasheets, derated by ``compute_efficiency`` and
``bandwidth_efficiency`` (what well-tuned kernels reach; estimates for every device but ``local``).
``local`` is this machine, measured by :func:`measure_local` and cached in
``$XDG_CACHE_HOME/anee-lite/device-local.json``.

Energy: ``joules_per_flop`` per dtype and ``joules_per_byte`` (DRAM/HBM traffic), plus
``idle_watts`` paid for every second the step takes. Arithmetic energies start from
M. Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm: fp32 FMA 4.6 pJ = 2.3 pJ/FLOP,
fp16 mult+add 1.5 pJ = 0.75 pJ/FLOP, int8 mult+add 0.23 pJ = 0.115 pJ/op) and are scaled linearly by
process node (``node_nm / 45``), a first-order estimate of dynamic energy, not a measurement.
Memory energies per bit: DDR3/DDR4 ~20-30 pJ/bit (Horowitz: 1.3-2.6 nJ per 64-bit read), GDDR6
~7.5 pJ/bit, HBM2 ~3.9 pJ/bit (O'Connor et al., "Fine-Grained DRAM", MICRO 2017), LPDDR4X/5 ~4-5
pJ/bit (estimate from the same paper's LPDDR4 figure).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields

from ..core.validation import check_int
from ..io.files import write_atomically
from .constants import COMPUTE_DTYPE, COMPUTE_DTYPES, DTYPES, HOROWITZ_45NM_J_PER_FLOP, PJ
from .timing import fit_step_time, median_seconds


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
        for name in ("compute_efficiency", "bandwidth_efficiency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{self.name}.{name} must be in (0, 1], got {value!r}")
        for name in ("peak_flops", "joules_per_flop"):
            table = getattr(self, name)
            if not isinstance(table, dict) or set(table) != set(COMPUTE_DTYPES):
                raise ValueError(f"{self.name}.{name} must map exactly {list(COMPUTE_DTYPES)} to numbers, got {table!r}")
            for dtype, value in table.items():
                _check_positive(f"{self.name}.{name}[{dtype!r}]", value)

    def flops_per_second(self, dtype: str) -> float:
        """Achievable FLOP/s for weights of ``dtype`` (peak x compute_efficiency)."""
        return self.peak_flops[COMPUTE_DTYPE[check_dtype(dtype)]] * self.compute_efficiency

    def bytes_per_second(self) -> float:
        """Achievable memory bandwidth (peak x bandwidth_efficiency)."""
        return self.memory_bandwidth * self.bandwidth_efficiency

    def as_dict(self) -> dict:
        """Plain JSON-ready fields (what :func:`profile_from_dict` reads back)."""
        return asdict(self)


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


def check_dtype(dtype: str) -> str:
    """A weight dtype the simulator knows."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return dtype


GB, GiB, MiB, TERA, GIGA = 1e9, 2**30, 2**20, 1e12, 1e9

# Every number below has its source in `sources`; "estimate" says so. The README's device table is built
# from this table (anee_lite.cost.simulator.device_table, tested equal).
PROFILES: dict[str, DeviceProfile] = {}


def _add(profile: DeviceProfile) -> None:
    PROFILES[profile.name] = profile


_add(DeviceProfile(
    name="t4", description="NVIDIA T4 16 GB (Google Colab's free GPU), GDDR6, 70 W",
    peak_flops={"fp32": 8.1 * TERA, "fp16": 65 * TERA, "int8": 130 * TERA},
    memory_bandwidth=320 * GB, memory_bytes=16 * GiB, cache_bytes=4 * MiB,
    op_overhead_s=5e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(12), joules_per_byte=pj_per_bit(7.5), idle_watts=10,
    sources={
        "peak_flops": "NVIDIA T4 datasheet: 8.1 TFLOPS fp32, 65 TFLOPS fp16 tensor, 130 TOPS int8",
        "memory_bandwidth": "NVIDIA T4 datasheet: 320 GB/s GDDR6, 16 GB",
        "cache_bytes": "Turing TU104 whitepaper: 4 MB L2",
        "op_overhead_s": "estimate: ~5 us CUDA kernel launch + eager PyTorch dispatch",
        "joules_per_flop": "Horowitz ISSCC 2014 (45 nm) scaled to TSMC 12 nm: estimate",
        "joules_per_byte": "GDDR6 ~7.5 pJ/bit (O'Connor et al., MICRO 2017): estimate",
        "idle_watts": "estimate: nvidia-smi idle readings of ~10 W are typical",
        "efficiency": "estimate: 70% of peak FLOP/s, 80% of peak bandwidth",
    }))
_add(DeviceProfile(
    name="l4", description="NVIDIA L4 24 GB, GDDR6, 72 W",
    peak_flops={"fp32": 30.3 * TERA, "fp16": 121 * TERA, "int8": 242.5 * TERA},
    memory_bandwidth=300 * GB, memory_bytes=24 * GiB, cache_bytes=48 * MiB,
    op_overhead_s=5e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(5), joules_per_byte=pj_per_bit(7.5), idle_watts=16,
    sources={
        "peak_flops": "NVIDIA L4 datasheet: 30.3 TFLOPS fp32, 242 TFLOPS fp16 / 485 TOPS int8 with sparsity "
                      "(dense = half)",
        "memory_bandwidth": "NVIDIA L4 datasheet: 300 GB/s GDDR6, 24 GB",
        "cache_bytes": "Ada Lovelace whitepaper (AD104): 48 MB L2",
        "op_overhead_s": "estimate: ~5 us CUDA kernel launch + eager PyTorch dispatch",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to TSMC 4N (~5 nm): estimate",
        "joules_per_byte": "GDDR6 ~7.5 pJ/bit (O'Connor et al., MICRO 2017): estimate",
        "idle_watts": "estimate: ~16 W idle",
        "efficiency": "estimate: 70% of peak FLOP/s, 80% of peak bandwidth",
    }))
_add(DeviceProfile(
    name="a100-40gb", description="NVIDIA A100 SXM 40 GB, HBM2, 400 W",
    peak_flops={"fp32": 19.5 * TERA, "fp16": 312 * TERA, "int8": 624 * TERA},
    memory_bandwidth=1555 * GB, memory_bytes=40 * GiB, cache_bytes=40 * MiB,
    op_overhead_s=5e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(7), joules_per_byte=pj_per_bit(3.9), idle_watts=50,
    sources={
        "peak_flops": "NVIDIA A100 datasheet: 19.5 TFLOPS fp32, 312 TFLOPS fp16 tensor, 624 TOPS int8 (dense)",
        "memory_bandwidth": "NVIDIA A100 datasheet: 1,555 GB/s HBM2, 40 GB",
        "cache_bytes": "NVIDIA Ampere GA100 whitepaper: 40 MB L2",
        "op_overhead_s": "estimate: ~5 us CUDA kernel launch + eager PyTorch dispatch",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to TSMC 7 nm: estimate",
        "joules_per_byte": "HBM2 3.9 pJ/bit (O'Connor et al., MICRO 2017)",
        "idle_watts": "estimate: ~50 W idle",
        "efficiency": "estimate: 70% of peak FLOP/s, 80% of peak bandwidth",
    }))
_add(DeviceProfile(
    name="h100-sxm", description="NVIDIA H100 SXM 80 GB, HBM3, 700 W",
    peak_flops={"fp32": 67 * TERA, "fp16": 989 * TERA, "int8": 1979 * TERA},
    memory_bandwidth=3350 * GB, memory_bytes=80 * GiB, cache_bytes=50 * MiB,
    op_overhead_s=4e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(5), joules_per_byte=pj_per_bit(3.9), idle_watts=70,
    sources={
        "peak_flops": "NVIDIA H100 datasheet (SXM): 67 TFLOPS fp32, 1,979 TFLOPS fp16 / 3,958 TOPS int8 with "
                      "sparsity (dense = half)",
        "memory_bandwidth": "NVIDIA H100 datasheet (SXM): 3.35 TB/s HBM3, 80 GB",
        "cache_bytes": "NVIDIA Hopper whitepaper: 50 MB L2",
        "op_overhead_s": "estimate: ~4 us CUDA kernel launch + eager PyTorch dispatch",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to TSMC 4N (~5 nm): estimate",
        "joules_per_byte": "HBM 3.9 pJ/bit (O'Connor et al., MICRO 2017, HBM2; HBM3 similar): estimate",
        "idle_watts": "estimate: ~70 W idle",
        "efficiency": "estimate: 70% of peak FLOP/s, 80% of peak bandwidth",
    }))
_add(DeviceProfile(
    name="apple-m2", description="Apple M2 (10-core GPU), 100 GB/s unified LPDDR5, ~20 W",
    peak_flops={"fp32": 3.6 * TERA, "fp16": 3.6 * TERA, "int8": 15.8 * TERA},
    memory_bandwidth=100 * GB, memory_bytes=16 * GiB, cache_bytes=8 * MiB,
    op_overhead_s=10e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(5), joules_per_byte=pj_per_bit(4.5), idle_watts=2,
    sources={
        "peak_flops": "Apple M2 press release (June 2022): 3.6 TFLOPS GPU; 15.8 TOPS Neural Engine (int8 row); "
                      "fp16 = fp32 rate: estimate",
        "memory_bandwidth": "Apple M2 press release: 100 GB/s unified memory, up to 24 GB (16 GB taken)",
        "cache_bytes": "estimate: ~8 MB system-level cache (not published by Apple)",
        "op_overhead_s": "estimate: ~10 us per Metal (MPS) kernel dispatch from eager PyTorch",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to TSMC N5: estimate",
        "joules_per_byte": "LPDDR5 ~4.5 pJ/bit: estimate",
        "idle_watts": "estimate: ~2 W package idle",
        "efficiency": "estimate: 70% of peak FLOP/s, 80% of peak bandwidth",
    }))
_add(DeviceProfile(
    name="raspberry-pi-5", description="Raspberry Pi 5, 4x Cortex-A76 @ 2.4 GHz, LPDDR4X-4267, ~10 W",
    peak_flops={"fp32": 153.6 * GIGA, "fp16": 307.2 * GIGA, "int8": 614.4 * GIGA},
    memory_bandwidth=17.1 * GB, memory_bytes=8 * GiB, cache_bytes=2 * MiB,
    op_overhead_s=5e-6, matmul_overhead_s=20e-6,
    joules_per_flop=scaled_flop_energy(16), joules_per_byte=pj_per_bit(5), idle_watts=2.7,
    compute_efficiency=0.5, bandwidth_efficiency=0.6,
    sources={
        "peak_flops": "4 cores x 2.4 GHz x 2 NEON FMA pipes x 4 fp32 lanes x 2 (Arm Cortex-A76 TRM); fp16 2x, "
                      "int8 dot product 4x: derived peak",
        "memory_bandwidth": "Raspberry Pi 5 product brief: LPDDR4X-4267 on a 32-bit bus = 17.1 GB/s; 8 GB model",
        "cache_bytes": "Raspberry Pi 5 product brief: 2 MB shared L3",
        "op_overhead_s": "estimate: ~5 us per eager PyTorch operator on an A76",
        "matmul_overhead_s": "estimate: OpenMP fork/join over 4 cores",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to 16 nm: estimate",
        "joules_per_byte": "LPDDR4X ~5 pJ/bit: estimate",
        "idle_watts": "estimate: ~2.7 W board idle (commonly reported)",
        "efficiency": "estimate: 50% of peak FLOP/s, 60% of peak bandwidth (in-order memory system)",
    }))
_add(DeviceProfile(
    name="snapdragon-8-gen-3", description="Qualcomm Snapdragon 8 Gen 3 phone SoC (Adreno 750), LPDDR5X, ~10 W",
    peak_flops={"fp32": 4.6 * TERA, "fp16": 9.2 * TERA, "int8": 34 * TERA},
    memory_bandwidth=76.8 * GB, memory_bytes=12 * GiB, cache_bytes=12 * MiB,
    op_overhead_s=15e-6, matmul_overhead_s=0.0,
    joules_per_flop=scaled_flop_energy(4), joules_per_byte=pj_per_bit(4), idle_watts=0.5,
    compute_efficiency=0.5, bandwidth_efficiency=0.7,
    sources={
        "peak_flops": "estimate: Adreno 750 ~4.6 TFLOPS fp32 (widely reported, not published by Qualcomm), fp16 2x; "
                      "Hexagon NPU int8 ~34 TOPS (estimate)",
        "memory_bandwidth": "Qualcomm product brief: LPDDR5X up to 4800 MHz on 64 bits = 76.8 GB/s; 12 GB phone",
        "cache_bytes": "estimate: ~12 MB system-level cache",
        "op_overhead_s": "estimate: ~15 us per GPU/NPU dispatch from a mobile runtime",
        "joules_per_flop": "Horowitz ISSCC 2014 scaled to TSMC N4: estimate",
        "joules_per_byte": "LPDDR5X ~4 pJ/bit: estimate",
        "idle_watts": "estimate: ~0.5 W SoC idle while the screen is on",
        "efficiency": "estimate: 50% of peak FLOP/s (thermal throttling), 70% of peak bandwidth",
    }))

LOCAL = "local"


def device_names() -> list[str]:
    """Every shipped profile, ``local`` first (measured on this machine on first use)."""
    return [LOCAL, *PROFILES]


def get_profile(name: str, *, remeasure: bool = False) -> DeviceProfile:
    """A shipped profile by name, ``"local"`` (measured once, then read from the cache), or a .json/.yaml path.

    Raises:
        ValueError: unknown name (the message lists the known ones) or a bad profile file.
    """
    if not isinstance(name, str):
        raise TypeError(f"device must be a name or a path (str), got {name!r}")
    if name == LOCAL:
        return local_profile(remeasure=remeasure)
    if name in PROFILES:
        return PROFILES[name]
    if name.endswith((".json", ".yaml", ".yml")):
        return load_profile(name)
    raise ValueError(f"unknown device {name!r}; known devices: {device_names()} (or a .json/.yaml profile file)")


def profile_from_dict(data: dict) -> DeviceProfile:
    """A profile from plain fields (``DeviceProfile.as_dict()``'s keys); unknown keys are an error."""
    if not isinstance(data, dict):
        raise TypeError(f"a device profile must be a mapping of fields, got {type(data).__name__}")
    known = {f.name for f in fields(DeviceProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown device profile fields {unknown}; allowed: {sorted(known)}")
    required = {f.name for f in fields(DeviceProfile) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"device profile is missing fields {missing}")
    return DeviceProfile(**data)


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read a user's device profile from a JSON or YAML file (YAML needs PyYAML).

    Example file (JSON; the same keys in YAML)::

        {"name": "my-gpu", "description": "...", "peak_flops": {"fp32": 1e13, "fp16": 4e13, "int8": 8e13},
         "memory_bandwidth": 4.5e11, "memory_bytes": 1.2e10, "cache_bytes": 6e6, "op_overhead_s": 5e-6,
         "matmul_overhead_s": 0, "joules_per_flop": {"fp32": 1e-12, "fp16": 4e-13, "int8": 1e-13},
         "joules_per_byte": 6e-11, "idle_watts": 15, "sources": {"peak_flops": "vendor datasheet"}}
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"no such device profile file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p} is not a text file in UTF-8 ({exc.reason} at byte {exc.start}): "
                         "a device profile is JSON or YAML text") from None
    except OSError as exc:
        raise ValueError(f"cannot read the device profile {p}: {exc.strerror or exc}") from None
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("reading a YAML device profile needs PyYAML (pip install pyyaml), "
                             "or write the profile as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p} is not valid JSON: {exc}") from None
    try:
        return profile_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None


# --------------------------------------------------------------------------- this machine, measured


def local_cache_path() -> pathlib.Path:
    """Where the measured ``local`` profile is cached: ``$XDG_CACHE_HOME/anee-lite/device-local.json``."""
    from ..io.loading import offline_model_cache_dir

    return offline_model_cache_dir().parent / "device-local.json"  # beside the offline model


def local_profile(*, remeasure: bool = False) -> DeviceProfile:
    """This machine's profile: read from the cache, or measured (about 10 s) and cached.

    The cache is keyed on the torch version and thread count: a different setup measures again.
    """
    import torch

    path = local_cache_path()
    key = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if not remeasure and path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return profile_from_dict(cached["profile"])
        except (ValueError, KeyError, TypeError):
            pass  # a corrupt or old cache is measured again
    profile = measure_local()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"key": key, "profile": profile.as_dict()}, indent=1))
    except OSError as e:  # a read-only or full cache costs a re-measurement next time, not this result
        warnings.warn(f"could not cache the measured 'local' profile at {path} ({e}); it will be measured again "
                      "next time (set XDG_CACHE_HOME to a writable folder to keep it)", stacklevel=2)
    return profile


@dataclass
class LocalMeasurements:
    """What the micro-benchmark measured (medians)."""

    stream_bandwidth: float  # bytes/s reading a 128 MiB fp32 tensor (torch.sum)
    matvec_bandwidth: float  # bytes/s of weight streaming in [1, in] @ [in, out] (slope of the fit)
    matvec_overhead_s: float  # fixed seconds per matrix-vector product (intercept of the fit)
    matmul_flops: float  # FLOP/s of a [512, 1024] @ [1024, 1024] fp32 product
    op_overhead_s: float  # seconds per tiny operator (dispatch cost)


def run_micro_benchmark(repeats: int = 5, stream_mib: int = 128) -> LocalMeasurements:
    """Measure this machine: streaming bandwidth, matrix-vector and matrix-matrix throughput, per-op overhead.

    Matrix-vector products run at four weight sizes (0.5 to 32 MiB, sizes no model in particular
    uses), each over distinct matrices totalling >= ``stream_mib`` / 2 MiB, so that most come from
    DRAM, not a cache; a least-squares line ``seconds = overhead + bytes / bandwidth`` through the four
    gives the bandwidth a streaming kernel reaches and the fixed cost of one product (thread
    fork/join). About 2 s on an idle 2-core machine.
    """
    import torch
    import torch.nn.functional as F

    repeats = check_int("repeats", repeats, low=1)
    stream_mib = check_int("stream_mib", stream_mib, low=1)
    big = torch.full((stream_mib * MiB // 4,), 0.5)  # [N] fp32; the values do not change the speed
    stream = big.numel() * 4 / median_seconds(big.sum, repeats)
    del big

    sizes, seconds = [], []
    for d_in, d_out in ((256, 512), (512, 1024), (1024, 2048), (2048, 4096)):
        nbytes = d_in * d_out * 4
        count = max(2, stream_mib * MiB // 2 // nbytes)
        weights = [torch.full((d_in, d_out), 0.5) for _ in range(count)]  # [in, out] each
        x = torch.full((1, 1, d_in), 0.5)  # [1, 1, in]

        def matvecs(weights=weights, x=x):
            for w in weights:
                F.linear(x, w.t())  # [1, 1, in] @ [in, out] -> [1, 1, out], the forward's layout

        sizes.append(nbytes)
        seconds.append(median_seconds(matvecs, repeats) / count)
        del weights
    intercept, slope = fit_step_time(sizes, seconds)  # the same least-squares line, over weight bytes
    if slope <= 0:  # noise made larger matrices no slower: fall back to the largest size's rate
        slope, intercept = seconds[-1] / sizes[-1], 0.0

    a, b = torch.full((512, 1024), 0.5), torch.full((1024, 1024), 0.5)
    matmul = 2 * 512 * 1024 * 1024 / median_seconds(lambda: a @ b, repeats)

    tiny = torch.full((1, 64), 0.5)
    n_ops = 2000

    def tiny_ops():
        for _ in range(n_ops // 2):
            torch.add(tiny, tiny)
            tiny.transpose(0, 1)

    op = median_seconds(tiny_ops, repeats) / n_ops
    return LocalMeasurements(stream_bandwidth=stream, matvec_bandwidth=1 / slope,
                             matvec_overhead_s=max(intercept, 0.0), matmul_flops=matmul, op_overhead_s=op)


def profile_from_measurements(m: LocalMeasurements) -> DeviceProfile:
    """The ``local`` profile from micro-benchmark results (efficiencies 1: the numbers are achieved, not peaks)."""
    import torch

    try:
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on POSIX
        total_memory = 8 * GiB
    bandwidth = max(m.matvec_bandwidth, m.stream_bandwidth)
    threads = torch.get_num_threads()
    return DeviceProfile(
        name=LOCAL, description=f"this machine (CPU, {threads} torch threads), measured by a micro-benchmark",
        # Only fp32 was measured; eager PyTorch on a CPU gains little from fp16/int8 weights, so the same rate.
        peak_flops={"fp32": m.matmul_flops, "fp16": m.matmul_flops, "int8": m.matmul_flops},
        memory_bandwidth=bandwidth, memory_bytes=float(total_memory), cache_bytes=32 * MiB,
        op_overhead_s=m.op_overhead_s, matmul_overhead_s=m.matvec_overhead_s,
        joules_per_flop=dict(HOROWITZ_45NM_J_PER_FLOP), joules_per_byte=1.95e-9 / 8, idle_watts=10,
        compute_efficiency=1.0, bandwidth_efficiency=m.matvec_bandwidth / bandwidth,
        measured=True, validated=True,
        sources={
            "peak_flops": "measured: [512, 1024] @ [1024, 1024] fp32 matmul (fp16/int8 assumed equal)",
            "memory_bandwidth": "measured: max of torch.sum over 128 MiB and the matrix-vector fit's slope",
            "bandwidth_efficiency": "measured: matrix-vector bandwidth / memory_bandwidth",
            "op_overhead_s": "measured: tiny torch.add / transpose calls",
            "matmul_overhead_s": "measured: intercept of the matrix-vector time vs weight bytes fit",
            "cache_bytes": "estimate: a server CPU's last-level cache share",
            "joules_per_flop": "Horowitz ISSCC 2014, 45 nm, unscaled (the cost model's constants)",
            "joules_per_byte": "Horowitz ISSCC 2014: 1.95 nJ per 64-bit DRAM read (the cost model's constant)",
            "idle_watts": "estimate: ~10 W for a share of a server CPU",
        })


def measure_local(repeats: int = 5) -> DeviceProfile:
    """Run the micro-benchmark and turn it into the ``local`` profile (not cached; see :func:`local_profile`)."""
    return profile_from_measurements(run_micro_benchmark(repeats=repeats))
