"""Layer, head, neuron and activation sparsity on smollm2-135m at equal cost: quality, FLOPs, bytes, wall time.

    python benchmarks/bench_sparsity.py [--quick] [--tokens 256] [--repeats 5] [--json OUT] [--plot OUT.png]

For each lever (static early exit, layer skipping, head pruning, neuron pruning, activation
sparsity, the best combination found on calibration text) at the cost points 0.9/0.8/0.7/0.5 of
the full model's FLOPs per decoding token:

* top-1 agreement with the full model and perplexity, teacher-forced on the held-out Python docs
  (in domain: every score and threshold is computed on the Python-docs calibration text) and the
  held-out King James Bible (out of domain);
* FLOPs and bytes fractions from the cost model (:func:`anee_lite.cost.sparse_token_cost`);
* the measured decoding wall-time ratio: batch 1, KV cache, the pruned model (heads, neurons) or
  the real skip/gather path, runs of the full model and the lever alternating, median of the
  per-pair ratios (the machine may be shared: alternating pairs see the same load).

The default run takes a few minutes on 2 CPU cores; ``--quick`` checks the pipeline in about one.
Without ``--json`` the results go to ``anee_lite/data/sparsity_benchmark.json``, which notebook 06
and the README read.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from anee_lite.core.model import UnrolledModel
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained
from anee_lite.io.texts import eval_ids
from anee_lite.sparsity.evaluate import (
    RESULTS_FILE,
    best_levers,
    compute_scores,
    decode_time_ratio,
    format_table,
    plan_levers,
    quality,
    timed_model,
)

TEXTS = ("python_docs_heldout", "kjv_heldout")
DATA = Path(__file__).resolve().parents[1] / "anee_lite" / "data"


def jsonable(kwargs: dict) -> dict:
    """The setting's knobs in a compact, readable form."""
    out = {}
    for k, v in kwargs.items():
        if k == "skip_layers":
            out[k] = list(v)
        elif k in ("head_mask", "mlp_mask") and v is not None:
            out[k] = f"{int((v == 0).sum())} of {v.numel()} zero"
        elif k == "activation_sparsity" and v is not None:
            out[k] = getattr(v, "fraction", v)
        elif k == "exit_layers":
            out[k] = v
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quick", action="store_true", help="fewer tokens, points and repeats (~1 minute)")
    parser.add_argument("--tokens", type=int, default=256, help="held-out and calibration tokens per text")
    parser.add_argument("--decode-tokens", type=int, default=24, help="decoded tokens per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed pairs per setting")
    parser.add_argument("--points", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.5])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="save the Pareto plot here (PNG)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.decode_tokens, args.repeats, args.points = 96, 8, 2, [0.9, 0.7]
    start = time.perf_counter()

    hf, tokenizer = load_pretrained(args.model)
    model = UnrolledModel(hf)
    cal = eval_ids(tokenizer, "python_docs_calibration", args.tokens)
    texts = {name: eval_ids(tokenizer, name, args.tokens) for name in TEXTS}
    full = {name: model(ids).logits for name, ids in texts.items()}
    n_prompt = 16
    timing_ids = texts["python_docs_heldout"][:, :n_prompt + args.decode_tokens]
    context = n_prompt + args.decode_tokens // 2

    print(f"scores on {cal.shape[1]} calibration tokens ...", flush=True)
    scores = compute_scores(model, cal)
    settings = plan_levers(model, scores, args.points, context, progress=print)

    out = args.json or (DATA / RESULTS_FILE if not args.quick else Path("sparsity_quick.json"))
    partial = out.with_name(out.stem + ".partial.json")  # rows so far: a killed run keeps what it measured
    rows = []
    for s in settings:
        row = {"lever": s.lever, "label": s.label, "target": s.target, "reached": s.reached,
               "flops_fraction": s.flops_fraction, "bytes_fraction": s.bytes_fraction,
               "knobs": jsonable(s.forward_kwargs)}
        if s.reached:
            for name, ids in texts.items():
                row[name] = quality(model, ids, full[name], s.forward_kwargs)
            runner, kwargs = timed_model(model, hf, s)
            row.update(decode_time_ratio(model, runner, timing_ids, kwargs, n_prompt=n_prompt,
                                         repeats=args.repeats))
            del runner
        rows.append(row)
        wall = f"{row['wall_ratio']:.2f}" if "wall_ratio" in row else "-"
        agree = row.get("python_docs_heldout", {}).get("agreement", float("nan"))
        print(f"{s.target:>4} {s.lever:<20} {s.label:<60} flops {s.flops_fraction:.3f} "
              f"agree {agree:.3f} wall {wall}", flush=True)
        write_atomically(partial, json.dumps({"model": args.model, "complete": False, "rows": rows}, indent=1) + "\n")

    results = {
        "model": args.model, "n_layers": model.dims.n_layers, "tokens": args.tokens,
        "decode_tokens": args.decode_tokens, "repeats": args.repeats, "context_len_for_cost": context,
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "note": "wall-time: median of alternating full/lever decode pairs, batch 1, KV cache; shared machine",
        "full": {name: {"perplexity": quality(model, ids, full[name], {})["perplexity"]}
                 for name, ids in texts.items()},
        "rows": rows, "seconds": time.perf_counter() - start,
    }
    write_atomically(out, json.dumps(results, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(format_table(results))
    for (target, text), r in sorted(best_levers(results).items()):
        print(f"best at {target} on {text}: {r['lever']} ({r['label']}), agreement {r[text]['agreement']:.3f}")
    if args.plot:
        from anee_lite.notebook.sparsity_plots import plot_sparsity_pareto

        ax = plot_sparsity_pareto(results)
        ax.figure.savefig(args.plot, dpi=110, bbox_inches="tight")
    print(f"wrote {out} in {results['seconds']:.0f}s")


if __name__ == "__main__":
    main()
