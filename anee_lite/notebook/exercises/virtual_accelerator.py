"""Checks of notebook 07 (the virtual accelerator): arithmetic intensity, the speed-up of an early exit when
decoding is memory-bound, the batch at which a matrix product turns compute-bound."""

from __future__ import annotations

import math
from collections.abc import Callable

from ...cost.charges import layer_weight_params
from ...cost.constants import BYTES_PER_WEIGHT
from ._convention import ExerciseError, call, correct, exercise, number


@exercise("Matvec intensity")
def check_matvec_intensity(fn: Callable | None) -> None:
    """Exercise: ``fn(d_in, d_out, bytes_per_weight)`` = FLOPs per weight byte of ``x @ W``."""
    name = "Matvec intensity"
    for d_in, d_out, b in ((576, 1536, 4), (4096, 11008, 2), (64, 10, 0.5), (3, 7, 1)):
        want = 2 * d_in * d_out / (d_in * d_out * b)
        got = number(name, call(name, fn, d_in, d_out, b))
        if math.isclose(got, 1 / b, rel_tol=1e-9):
            raise ExerciseError(f"{name}: for d_in={d_in}, d_out={d_out}, {b} bytes/weight you count one FLOP per "
                                "weight; a multiply and an add are two.")
        if not math.isclose(got, want, rel_tol=1e-9):
            raise ExerciseError(f"{name}: wrong for d_in={d_in}, d_out={d_out}, {b} bytes/weight. Count 2 FLOPs (a "
                                "multiply and an add) per weight, and bytes_per_weight bytes read per weight.")
    correct(name, "A matrix-vector product does 2 FLOPs per weight whatever its shape: its intensity is "
                  "2 / bytes_per_weight, far left of every device's ridge point.")


@exercise("Exit speed-up")
def check_exit_speedup(fn: Callable | None, dims) -> None:
    """Exercise: ``fn(dims, layers, bytes_per_weight)`` = full-depth weight bytes / weight bytes at ``layers``."""
    name = "Exit speed-up"
    params = layer_weight_params(dims)
    for layers in (dims.n_layers, dims.n_layers // 2, max(1, dims.n_layers // 4), 1):
        for dtype in ("fp16", "int4"):
            b = BYTES_PER_WEIGHT[dtype]
            per_layer = (params["qkv_o"] + params["mlp"]) * b
            head = dims.d_model * dims.d_vocab * b
            want = (dims.n_layers * per_layer + head) / (layers * per_layer + head)
            got = number(name, call(name, fn, dims, layers, b))
            if math.isclose(got, dims.n_layers / layers, rel_tol=0.02) and layers != dims.n_layers:
                raise ExerciseError(f"{name}: at {layers} layers you count the layers only; the unembedding "
                                    "(d_model x d_vocab) is read at every exit too.")
            if not math.isclose(got, want, rel_tol=0.02):
                raise ExerciseError(f"{name}: wrong for {layers} layers at {b} bytes/weight. Count every layer's "
                                    "matrices (layer_weight_params) and the unembedding (d_model x d_vocab), which "
                                    "runs whatever the exit.")
    correct(name, "In memory-bound decoding, time follows bytes: the unembedding is paid at every exit, so exiting "
                  "at half depth saves less than half the time.")


@exercise("Crossover batch")
def check_crossover_batch(fn: Callable | None, profiles: dict) -> None:
    """Exercise: ``fn(profile, bytes_per_weight)``, the smallest batch at which a big matrix product is
    compute-bound (its intensity, 2 x batch / bytes_per_weight, reaches the ridge point, fp16 compute)."""
    name = "Crossover batch"
    for device, p in profiles.items():
        for b in (2.0, 1.0):
            ridge = p.flops_per_second("fp16") / p.bytes_per_second()
            want = max(1, math.ceil(ridge * b / 2))
            got = number(name, call(name, fn, p, b), whole=True)
            if got == want:
                continue
            if got in (math.floor(ridge * b / 2), round(ridge * b / 2)) and got < want:
                raise ExerciseError(f"{name}: on {device} with {b} bytes/weight your batch is just below the ridge "
                                    "point; round up: the smallest whole batch that reaches it.")
            raise ExerciseError(f"{name}: wrong on {device} with {b} bytes/weight. The ridge point is achievable "
                                "FLOP/s / achievable bytes/s (profile.flops_per_second('fp16') / "
                                "profile.bytes_per_second()); a batch of B rows does 2 x B FLOPs per weight read.")
    correct(name, "Below that batch a bigger batch is almost free (weights are read once for all rows); above it, "
                  "every extra row costs its FLOPs.")
