"""Raspberry Pi 5, 4x Cortex-A76 @ 2.4 GHz, LPDDR4X-4267, ~10 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, GIGA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 6  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
