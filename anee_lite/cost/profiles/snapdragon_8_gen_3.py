"""Qualcomm Snapdragon 8 Gen 3 phone SoC (Adreno 750), LPDDR5X, ~10 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 7  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
