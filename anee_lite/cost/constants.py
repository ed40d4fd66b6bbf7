"""The cost model's physical constants, each defined once: bytes per weight, and energy per FLOP and per byte.

Energies come from M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
for a 45 nm process: a 32-bit float multiply costs 3.7 pJ and an add 0.9 pJ (4.6 pJ per multiply-add, 2.3 pJ
per FLOP), a 16-bit float multiply-add 1.5 pJ, an 8-bit integer one 0.23 pJ; reading a 64-bit word from DRAM
costs 1.3-2.6 nJ. Order-of-magnitude teaching numbers for an old process, not a measurement of any machine.
"""

PJ = 1e-12  # joules per picojoule

DTYPES = ("fp32", "fp16", "int8", "int4")  # weight dtypes the simulator accepts
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
BYTES_PER_PARAM = BYTES_PER_WEIGHT["fp32"]  # the library's own weights, hence the cost model's
# Which arithmetic runs for each weight dtype: int4 weights are dequantized to fp16 (weight-only quantization,
# as llama.cpp / GPTQ / AWQ kernels do); int8 weights with int8 activations use the int8 units.
COMPUTE_DTYPE = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int4": "fp16"}
COMPUTE_DTYPES = ("fp32", "fp16", "int8")

# Horowitz 2014, 45 nm, per FLOP (a multiply-add is 2 FLOPs): fp32 (3.7 + 0.9) / 2 pJ, fp16 1.5 / 2, int8 0.23 / 2.
HOROWITZ_45NM_J_PER_FLOP = {"fp32": 2.3 * PJ, "fp16": 0.75 * PJ, "int8": 0.115 * PJ}
ENERGY_PER_FLOP_J = HOROWITZ_45NM_J_PER_FLOP["fp32"]  # the cost model computes in fp32
ENERGY_PER_BYTE_J = 1.95e-9 / 8  # Horowitz 2014: DRAM read of a 64-bit word, 1.3-2.6 nJ (midpoint), per byte
