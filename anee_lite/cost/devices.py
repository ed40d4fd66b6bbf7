"""Device profiles for the virtual accelerator: what one chip can compute and move, and what it costs in joules.

A :class:`DeviceProfile` is the written interface: every field has a unit, and every shipped
number says where it comes from in ``sources`` (a vendor datasheet, a paper, or "estimate" with
the reasoning). Adding a device is one file in :mod:`anee_lite.cost.profiles` plus its test, or, for a user,
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
import os
import pathlib
import warnings
from dataclasses import MISSING, dataclass, fields

from ..core.validation import check_int
from ..io.files import write_atomically
from .constants import ENERGY_PER_BYTE_J, HOROWITZ_45NM_J_PER_FLOP
from .device_profile import DeviceProfile, GiB, MiB
from .profiles import PROFILES
from .timing import fit_step_time, median_seconds

LOCAL = "local"
# Bumped whenever run_micro_benchmark measures differently, so that a cached profile from before is re-measured.
MEASUREMENT_METHOD = 8
# This machine's speed drifts (on this project's 2-core machines a decoding step took 47 ms one afternoon and 19 ms
# that evening): a cached profile whose quick check now runs this many times faster or slower is measured again.
DRIFT_TOLERANCE = 1.25
MATMUL_ROWS = (16, 64, 256, 512)  # row counts of the matrix-matrix micro-benchmark (1 is the matrix-vector one)
FEW_ROWS = (2, 4, 8, 16)  # row counts timed against one row on the matrix-vector weights (catch-up, verify passes)
# The matrix-vector size they are timed at: a mid-sized [in, out]. At [2048, 4096] two or three rows ran 1.7-2.4x one
# row here (four 1.8x), against ~1.35x at 1024 x 2048 and at SmolLM2-135M's own shapes.
FEW_ROWS_SHAPE = (1024, 2048)
ATTENTION_TOKENS = 256  # prompt length of the attention micro-benchmark (it reached 54-66 GFLOP/s from 128 to 512 here)
ATTENTION_CALLS = 16  # attention calls per timing, as many as a short model's layers


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

    The cache is keyed on the torch version, thread count and :data:`MEASUREMENT_METHOD`: a different setup,
    or a profile measured the way an older version did, is measured again. It is also measured again,
    with a warning that says why, when the machine no longer runs as it did: every read repeats
    :func:`quick_check` (about 0.1 s) and compares it with the one stored beside the profile.
    """
    import torch

    path = local_cache_path()
    key = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "method": MEASUREMENT_METHOD}
    if not remeasure and path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                profile = profile_from_dict(cached["profile"])
                moved = drift(cached["check"], quick_check())
                if moved is None:
                    return profile
                warnings.warn(f"the cached 'local' profile no longer matches this machine ({moved}); "
                              "measuring it again (about 10 s)", stacklevel=3)
        except (ValueError, KeyError, TypeError):
            pass  # a corrupt or old cache is measured again
    profile = measure_local()
    check = quick_check()  # right after the profile, as the machine runs now
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"key": key, "profile": profile.as_dict(), "check": check}, indent=1))
    except OSError as e:  # a read-only or full cache costs a re-measurement next time, not this result
        warnings.warn(f"could not cache the measured 'local' profile at {path} ({e}); it will be measured again "
                      "next time (set XDG_CACHE_HOME to a writable folder to keep it)", stacklevel=2)
    return profile


def quick_check() -> dict[str, float]:
    """Two fast timings that move with what the ``local`` profile measured, stored beside it in the cache.

    ``matvec_s``: one pass of one-row products over 64 MiB of distinct weights (more than a CPU's cache,
    as decoding streams them), through the forward's own product; ``op_s``: one tiny operator call, from
    a loop of them. Medians of 5; about 0.1 s in all.
    """
    import torch

    from ..core.architectures.base import linear

    weights = [torch.full((1024, 1024), 0.5) for _ in range(16)]  # 16 x [1024, 1024] fp32 = 64 MiB
    x = torch.full((1, 1, 1024), 0.5)
    small = torch.zeros(8)

    def products():
        for w in weights:
            linear(x, w)  # [1, 1, 1024] @ [1024, 1024]

    def calls():
        for _ in range(200):
            torch.add(small, small)

    return {"matvec_s": median_seconds(products, 5), "op_s": median_seconds(calls, 5) / 200}


def drift(stored: dict, fresh: dict, tolerance: float = DRIFT_TOLERANCE) -> str | None:
    """What moved between two :func:`quick_check` results by more than ``tolerance`` (a factor, either way), or None."""
    what = {"matvec_s": "one-row products over 64 MiB of weights", "op_s": "a tiny operator call"}
    moved = []
    for name, label in what.items():
        ratio = float(fresh[name]) / float(stored[name])
        if not 1 / tolerance <= ratio <= tolerance:
            moved.append(f"{label} now takes {ratio:.2f}x the time it took when the profile was measured")
    return "; ".join(moved) or None


@dataclass
class LocalMeasurements:
    """What the micro-benchmark measured (medians)."""

    stream_bandwidth: float  # bytes/s reading a 128 MiB fp32 tensor (torch.sum)
    matvec_bandwidth: float  # bytes/s of weight streaming in [1, in] @ [in, out] (slope of the fit)
    matvec_overhead_s: float  # fixed seconds per matrix-vector product (intercept of the fit)
    matmul_flops: float  # FLOP/s of the fastest [rows, 1024] @ [1024, 1024] fp32 products over distinct weights
    op_overhead_s: float  # seconds per framework operator call on the library's own decoding path
    matmul_rows: tuple = ()  # (rows, FLOP/s) for each row count measured (MATMUL_ROWS)
    few_rows: tuple = ()  # (rows, seconds over one row's) for each of FEW_ROWS on the FEW_ROWS_SHAPE matrix-vector weights
    attention_flops: float = 0.0  # FLOP/s of causal attention over ATTENTION_TOKENS tokens (0: not measured)


def run_micro_benchmark(repeats: int = 5, stream_mib: int = 128, matvec_mib: int = 512) -> LocalMeasurements:
    """Measure this machine: streaming bandwidth, matrix-vector and matrix-matrix throughput, per-op overhead.

    The per-op overhead is what the library's decoding loop pays per operator call, Python included: a
    cached decoding step of a tiny random model (weights too small to matter), divided by the operator
    calls the simulator charges for that step. Tight loops of tiny ``torch.add`` calls measured a third
    of that and left the simulator 20-30% optimistic on this machine.

    Matrix-vector products, through the forward's own ``linear`` (split-K over the torch threads),
    run at four weight sizes (0.5 to 32 MiB, sizes no model in particular uses), each over distinct
    matrices totalling >= ``matvec_mib`` MiB, as much as a small model streams in one decoding step
    (a stream of 64 MiB, which the page tables of a CPU cover more cheaply, ran 15-20% faster than
    SmolLM2-135M's own products here and left the simulator that optimistic); a least-squares line
    ``seconds = overhead + bytes / bandwidth`` through the four gives the bandwidth the forward's
    products reach and the fixed cost of one product (thread fork/join). At the 8 MiB size the same
    products also run over 2, 4, 8 and 16 rows: a few rows cost more than one on a CPU though the weights
    are read once (``few_rows``; what a caught-up token or a short verify pass adds). About 5 s on an
    idle 2-core machine.
    """
    import torch

    from ..core.architectures.base import linear  # the forward's own product, split-K for one row included

    repeats = check_int("repeats", repeats, low=1)
    stream_mib = check_int("stream_mib", stream_mib, low=1)
    matvec_mib = check_int("matvec_mib", matvec_mib, low=1)
    big = torch.full((stream_mib * MiB // 4,), 0.5)  # [N] fp32; the values do not change the speed
    stream = big.numel() * 4 / median_seconds(big.sum, repeats)
    del big

    sizes, seconds, few_rows = [], [], []
    for d_in, d_out in ((256, 512), (512, 1024), (1024, 2048), (2048, 4096)):
        nbytes = d_in * d_out * 4
        count = max(2, matvec_mib * MiB // nbytes)
        weights = [torch.full((d_in, d_out), 0.5) for _ in range(count)]  # [in, out] each
        x = torch.full((1, 1, d_in), 0.5)  # [1, 1, in]

        def matvecs(weights=weights, x=x):
            for w in weights:
                linear(x, w)  # [1, 1, in] @ [in, out] -> [1, 1, out], as the forward multiplies

        sizes.append(nbytes)
        seconds.append(median_seconds(matvecs, repeats) / count)
        if (d_in, d_out) == FEW_ROWS_SHAPE:  # the same weights a few rows at a time: a caught-up token, a verify pass
            for rows in FEW_ROWS:
                x_rows = torch.full((1, rows, d_in), 0.5)  # [1, rows, in]
                ratio = median_seconds(lambda x_rows=x_rows: matvecs(x=x_rows), repeats) / count / seconds[-1]
                few_rows.append((rows, max(1.0, ratio)))  # noise can time two rows a hair under one; >= 1 is the rule
        del weights
    intercept, slope = fit_step_time(sizes, seconds)  # the same least-squares line, over weight bytes
    if slope <= 0:  # noise made larger matrices no slower: fall back to the largest size's rate
        slope, intercept = seconds[-1] / sizes[-1], 0.0

    # Distinct weights, as a forward streams each layer's own: one matrix reused stays in the cache and ran
    # ~20% faster than a prefill's products on this machine. The rate depends on the rows multiplied at once
    # (here ~50 GFLOP/s at 16 rows, ~110 at 64, ~150 at 256 and more), so a prompt's length sets its products' speed.
    weights = [torch.full((1024, 1024), 0.5) for _ in range(max(2, stream_mib * MiB // 2 // (1024 * 1024 * 4)))]
    matmul_rows = []
    for rows in MATMUL_ROWS:
        a = torch.full((rows, 1024), 0.5)  # [rows, in]

        def matmuls(a=a, weights=weights):
            for w in weights:
                linear(a, w)  # [rows, 1024] @ [1024, 1024], as the forward multiplies

        matmul_rows.append((rows, 2 * rows * 1024 * 1024 * len(weights) / median_seconds(matmuls, repeats)))
    del weights

    op = _decode_dispatch_seconds(repeats)
    return LocalMeasurements(stream_bandwidth=stream, matvec_bandwidth=1 / slope,
                             matvec_overhead_s=max(intercept, 0.0), matmul_flops=max(f for _, f in matmul_rows),
                             op_overhead_s=op, matmul_rows=tuple(matmul_rows), few_rows=tuple(few_rows),
                             attention_flops=_attention_flops(repeats))


def _attention_flops(repeats: int, heads: int = 8, d_head: int = 64) -> float:
    """FLOP/s of the forward's causal attention kernel over an ATTENTION_TOKENS-token prompt, counted as the simulator does."""
    import torch
    import torch.nn.functional as F

    T = ATTENTION_TOKENS
    q, k, v = (torch.full((1, heads, T, d_head), 0.5) for _ in range(3))  # [B, H, T, D]
    keys_attended = T * T - T * (T - 1) // 2  # query t sees t + 1 keys
    flops = 2 * 2 * heads * d_head * keys_attended  # q @ k.T and pattern @ v, 2 FLOPs per multiply-add

    def prefill_attention():
        for _ in range(ATTENTION_CALLS):
            F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, D], as core.attention calls it

    return flops * ATTENTION_CALLS / median_seconds(prefill_attention, repeats)


def _decode_dispatch_seconds(repeats: int, n_layers: int = 8) -> float:
    """Seconds per operator call of a cached decoding step of a tiny random Llama, through the library's forward."""
    import statistics

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..core.model import UnrolledModel
    from ..decoding import greedy_generate
    from .simulator import pass_ops  # imported here: the simulator's module imports the shipped profiles

    cfg = LlamaConfig(num_hidden_layers=n_layers, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=128, max_position_embeddings=256)
    with torch.random.fork_rng():  # the caller's random state is not touched
        torch.manual_seed(0)
        model = UnrolledModel(LlamaForCausalLM(cfg).eval(), share_weights=True)
    ids = torch.arange(32)[None] % cfg.vocab_size  # [1, 32] prompt
    greedy_generate(model, ids, max_new_tokens=3)  # warm-up
    steps = []
    for _ in range(repeats):
        steps.extend(greedy_generate(model, ids, max_new_tokens=9).step_times[1:])  # decoding steps only
    calls = sum(op.dispatches for op in pass_ops(model.dims, layers_run=n_layers, context_len=ids.shape[1] + 5))
    return statistics.median(steps) / calls  # per call the simulator charges for this step


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
        joules_per_flop=dict(HOROWITZ_45NM_J_PER_FLOP), joules_per_byte=ENERGY_PER_BYTE_J, idle_watts=10,
        compute_efficiency=1.0, bandwidth_efficiency=m.matvec_bandwidth / bandwidth,
        rows_efficiency=tuple((rows, flops / m.matmul_flops) for rows, flops in m.matmul_rows),
        few_rows_slowdown=m.few_rows,
        attention_efficiency=min(1.0, m.attention_flops / m.matmul_flops) if m.attention_flops > 0 else 1.0,
        measured=True, validated=True,
        sources={
            "peak_flops": "measured: the fastest of [rows, 1024] @ [1024, 1024] fp32 matmuls over distinct weights "
                          "(fp16/int8 assumed equal)",
            "rows_efficiency": "measured: each row count's rate over the fastest",
            "few_rows_slowdown": f"measured: [rows, {FEW_ROWS_SHAPE[0]}] @ {list(FEW_ROWS_SHAPE)} products over "
                                 "512 MiB of weights, their time over one row's",
            "attention_efficiency": f"measured: causal attention over {ATTENTION_TOKENS} tokens (8 heads of 64), "
                                    "its rate over the fastest matmul's",
            "memory_bandwidth": "measured: max of torch.sum over 128 MiB and the matrix-vector fit's slope",
            "bandwidth_efficiency": "measured: matrix-vector bandwidth / memory_bandwidth",
            "op_overhead_s": "measured: a cached decoding step of a tiny random Llama through the library, "
                             "per operator call",
            "matmul_overhead_s": "measured: intercept of the matrix-vector time vs weight bytes fit",
            "cache_bytes": "estimate: a server CPU's last-level cache share",
            "joules_per_flop": "Horowitz ISSCC 2014, 45 nm, unscaled (the cost model's constants)",
            "joules_per_byte": "Horowitz ISSCC 2014: 1.95 nJ per 64-bit DRAM read (the cost model's constant)",
            "idle_watts": "estimate: ~10 W for a share of a server CPU",
        })


def measure_local(repeats: int = 5) -> DeviceProfile:
    """Run the micro-benchmark and turn it into the ``local`` profile (not cached; see :func:`local_profile`)."""
    return profile_from_measurements(run_micro_benchmark(repeats=repeats))
