"""NVIDIA T4 16 GB (Google Colab's free GPU), GDDR6, 70 W.

Every number has its source in ``sources``; "estimate" says so.
"""

from ..device_profile import GB, TERA, DeviceProfile, GiB, MiB, pj_per_bit, scaled_flop_energy

ORDER = 1  # its row in tables: datacenter GPUs first, then laptop, single-board computer, phone

PROFILE = DeviceProfile(
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
    })
