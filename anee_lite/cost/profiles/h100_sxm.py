"""NVIDIA H100 SXM 80 GB, HBM3, 700 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 4  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
