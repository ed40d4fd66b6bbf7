"""NVIDIA L4 24 GB, GDDR6, 72 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 2  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
