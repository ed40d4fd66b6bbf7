"""Where early exit loses agreement on the real path: the exiting tokens, or the tokens after them?

    python benchmarks/bench_propagation.py [--tokens 2048] [--chunk 128] [--thresholds 0.95] [--out results.json]

Decodes the held-out Python docs token by token with the KV cache (the path ``bench_adaptive.py`` and
``python -m anee_lite evaluate`` measure) under the shipped ``learned`` controller, at the thresholds
``bench_adaptive.py`` calibrated for targets 0.8 and 0.9 (read from the shipped JSON) and at any given
with ``--thresholds``. Each token's agreement with the full model is counted in one of three groups:
it exited early; it ran every layer and no earlier token of its chunk had exited; it ran every layer
after one had (it attends to the frozen keys and values an exit left: state propagation).

Shipped run: ``--out anee_lite/data/smollm2-135m_propagation_bench.json`` on a quiet machine (the counts do not
depend on the load; the rule for shipped results is the same as every benchmark's).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from machine import machine, refuse_unless_quiet

from anee_lite.adaptive.calibration import text_chunks
from anee_lite.adaptive.evaluate import build_controller
from anee_lite.adaptive.real_calibration import agreement_by_exit_history, decode_thresholds
from anee_lite.core.model import UnrolledModel
from anee_lite.io import eval_text
from anee_lite.io.assets import DATA_DIR
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained

GROUPS = {"exited": "exited early", "full_depth_clean": "full depth, no exit before",
          "full_depth_after_exit": "full depth, after an exit"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="held-out tokens decoded (default 2048)")
    parser.add_argument("--chunk", type=int, default=128, help="tokens per chunk, each from an empty cache")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.95],
                        help="thresholds besides the shipped calibrated ones (default 0.95)")
    parser.add_argument("--out", default=None, help="write the counts and the machine's load as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite the shipped JSON even on a busy machine")
    args = parser.parse_args()
    about = machine()
    shipped = args.out is not None and Path(args.out).resolve().parent == DATA_DIR.resolve()
    refuse_unless_quiet(about["load_before"], shipped, args.force)
    if args.tokens < 1 or args.chunk < 1:
        parser.error("--tokens and --chunk must be >= 1")

    bench = json.loads((DATA_DIR / "smollm2-135m_adaptive_bench.json").read_text())
    calibrated = {t: r["threshold"] for t, r in bench["controllers"]["learned"]["targets"].items()}
    thresholds = sorted({*calibrated.values(), *args.thresholds}, reverse=True)
    hf, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf, share_weights=True)
    controller = build_controller(model, "smollm2-135m", "learned")
    chunks = text_chunks(tokenizer, eval_text("python_docs_heldout"), max_tokens=args.tokens, chunk=args.chunk)
    start = time.perf_counter()
    runs = decode_thresholds(model, chunks, controller, thresholds, batch_rows=256, kv_fill="propagate")  # what it studies
    split = agreement_by_exit_history(runs, model.dims.n_layers)
    seconds = time.perf_counter() - start

    n = sum(c.shape[1] for c in chunks)
    print(f"learned controller, held-out Python docs, {n} tokens in chunks of {args.chunk}; "
          f"calibrated thresholds {calibrated}\n")
    print(f"{'threshold':>10}  {'overall':>8}  " + "  ".join(f"{label:>28}" for label in GROUPS.values()))
    for thr in thresholds:
        groups = split[thr]
        overall = sum(g["agreements"] for g in groups.values()) / n
        cells = [f"{g['agreements'] / g['tokens']:.3f} on {g['tokens']:5d} tokens" if g["tokens"] else "-"
                 for g in (groups[k] for k in GROUPS)]
        print(f"{thr:10.4g}  {overall:8.3f}  " + "  ".join(f"{c:>28}" for c in cells))
    if args.out:
        report = {**about, "load_after": list(os.getloadavg()), "tokens": n, "chunk": args.chunk,
                  "calibrated_thresholds": calibrated, "decode_seconds": seconds,
                  "groups": {str(t): split[t] for t in thresholds}}
        write_atomically(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
