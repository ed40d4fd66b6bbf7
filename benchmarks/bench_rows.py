"""What an extra row costs in a decoding step's matrix products: is a token caught up beside the next one free?

    python benchmarks/bench_rows.py [--rows 1 2 3 4 8] [--repeats 15] [--out results.json] [--force]

Runs the four matrix products of every SmolLM2-135M layer (``W_QKV``, ``W_O``, ``W_mlp_in``, ``W_out``:
the weights a decoding step streams from memory) through the forward's own ``linear`` for 1, 2, ...
rows at a time, and reports the median time of one pass over all layers. With one row the products are
bound by reading the weights; if they stayed bound by it, rows caught up beside the next token
(``kv_fill="catch_up"``, :mod:`anee_lite.core.cache`) would cost nothing extra. The ratio of each row count
to one row says what they do cost on this machine.

Shipped run: ``--out anee_lite/data/smollm2-135m_rows_bench.json`` on a quiet machine (it refuses to
overwrite the shipped file when the 1-minute load before the run is above 1.0, unless ``--force``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from machine import machine, refuse_unless_quiet

from anee_lite.core.model import UnrolledModel
from anee_lite.cost.timing import step_products_seconds
from anee_lite.io.assets import DATA_DIR
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 4, 8], help="row counts (default 1 2 3 4 8)")
    parser.add_argument("--repeats", type=int, default=15, help="passes per row count; the median is kept")
    parser.add_argument("--out", default=None, help="write the timings and the machine's load as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite the shipped JSON even on a busy machine")
    args = parser.parse_args()
    if args.repeats < 1 or any(r < 1 for r in args.rows) or 1 not in args.rows:
        parser.error("--repeats must be >= 1 and --rows positive counts that include 1 (the reference)")
    about = machine()
    shipped = args.out is not None and Path(args.out).resolve().parent == DATA_DIR.resolve()
    refuse_unless_quiet(about["load_before"], shipped, args.force)

    hf, _ = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf)
    weight_bytes = sum(w.numel() * w.element_size() for b in model.arch.blocks
                       for w in (b.W_QKV, b.W_O, b.W_mlp_in, b.W_out))
    seconds = {r: step_products_seconds(model, r, args.repeats, unembed=False) for r in sorted(set(args.rows))}
    print(f"smollm2-135m, {len(model.arch.blocks)} layers' products ({weight_bytes / 1e6:.0f} MB of weights), "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'rows':>5}  {'ms':>6}  {'x one row':>9}  {'extra row vs one row':>20}")
    for r, s in seconds.items():
        extra = "" if r == 1 else f"{(s / seconds[1] - 1) / (r - 1):20.2f}"
        print(f"{r:5d}  {1000 * s:6.1f}  {s / seconds[1]:9.2f}  {extra}")
    if args.out:
        report = {**about, "load_after": list(os.getloadavg()), "weight_bytes": weight_bytes,
                  "repeats": args.repeats, "seconds": {str(r): s for r, s in seconds.items()}}
        write_atomically(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
