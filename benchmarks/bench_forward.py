"""Unrolled forward vs HuggingFace forward, and offline-model load time (GGUF vs cache), on smollm2-135m.

    python benchmarks/bench_forward.py [--repeats 7] [--quick]

Everything is measured side by side in one run, alternating, and reported as medians and ratios.
Wrapping a model re-lays out its weights as [in, out] views (faster on CPU), which also speeds up
the HF model that shares them; so HF is timed twice: on a second copy left as loaded, and on the
shared, re-laid-out weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_throughput(repeats: int, shapes: list[tuple[int, int]]) -> None:
    from anee_lite import UnrolledModel
    from anee_lite.io.loading import load_pretrained

    hf_as_loaded, _ = load_pretrained("smollm2-135m")
    hf_shared, _ = load_pretrained("smollm2-135m")
    ours = UnrolledModel(hf_shared, share_weights=True)
    print(f"{'shape [B, T]':>14} {'anee tok/s':>11} {'HF as loaded':>13} {'HF shared':>10} "
          f"{'anee / HF as loaded':>20} {'anee / HF shared':>17}")
    for B, T in shapes:
        ids = torch.randint(100, 40000, (B, T), generator=torch.Generator().manual_seed(T))
        runs = {"anee": ours, "hf": hf_as_loaded, "hf_shared": hf_shared}
        times = {k: [] for k in runs}
        with torch.no_grad():
            for fn in runs.values():  # warm-up
                fn(ids)
            for _ in range(repeats):
                for k, fn in runs.items():  # alternate, so drifting machine load hits all three alike
                    times[k].append(timed(lambda: fn(ids)))  # noqa: B023 (called at once)
        med = {k: statistics.median(v) for k, v in times.items()}
        tps = {k: B * T / v for k, v in med.items()}
        print(f"{[B, T]!s:>14} {tps['anee']:>11.0f} {tps['hf']:>13.0f} {tps['hf_shared']:>10.0f} "
              f"{med['hf'] / med['anee']:>20.2f} {med['hf_shared'] / med['anee']:>17.2f}")


LOAD = "import time, torch; from anee_lite.io.loading import load_pretrained; t = time.perf_counter(); " \
       "load_pretrained('smollm2-135m'); print(time.perf_counter() - t)"


def load_times(repeats: int) -> None:
    """Time load_pretrained in fresh processes: first into an empty cache (GGUF), then from the cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache, HF_HUB_OFFLINE="1")

        def run() -> float:
            out = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, check=True)
            return float(out.stdout.strip().splitlines()[-1])

        from_gguf = run()
        from_cache = statistics.median(run() for _ in range(repeats))
    print(f"load_pretrained('smollm2-135m'), import of transformers excluded: from GGUF {from_gguf:.1f} s "
          f"(first use), from cache {from_cache:.2f} s (median of {repeats}); ratio {from_gguf / from_cache:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median reported)")
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    forward_throughput(repeats, [(1, 128)] if args.quick else [(1, 32), (1, 128), (4, 128), (1, 512)])
    print()
    load_times(max(1, repeats // 2))


if __name__ == "__main__":
    main()
