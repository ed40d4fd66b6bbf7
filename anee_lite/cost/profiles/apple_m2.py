"""Apple M2 (10-core GPU), 100 GB/s unified LPDDR5, ~20 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 5  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
