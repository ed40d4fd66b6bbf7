"""NVIDIA A100 SXM 40 GB, HBM2, 400 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 3  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
