"""Layer, head, neuron and activation sparsity on smollm2-135m at equal cost: quality, FLOPs, bytes, wall time.

    python benchmarks/bench_sparsity.py [--quick] [--tokens 256] [--repeats 5] [--json OUT] [--plot OUT.png] [--force]

For each lever (static early exit, layer skipping, head pruning, neuron pruning, activation
sparsity, the best combination found on calibration text) at the cost points 0.9/0.8/0.7/0.5 of
the full model's FLOPs per decoding token:

* top-1 agreement with the full model and perplexity, teacher-forced on the held-out Python docs
  (in domain: every score and threshold is computed on the Python-docs calibration text) and the
  held-out King James Bible (out of domain);
* FLOPs and bytes fractions from the cost model (:func:`anee_lite.cost.sparse_token_cost`);
* the measured decoding wall-time ratio: batch 1, KV cache, the pruned model (heads, neurons) or
  the real skip/row-reading path, runs of the full model and the lever alternating, median of the
  per-pair ratios (alternating pairs see the same load).

Then activation sparsity on its own: a micro-benchmark of every matrix shape of the model (dense
product against reading only the kept rows, selection included, 0-90% sparsity), decoding speed on
the user's path (``ANEEWrapper.generate`` with ``masks={"activation_sparsity": f}``, rotating order)
with agreement and perplexity at each sparsity, and what the same lever would save on a 7B model on
a T4 and on a phone (the simulator with ideal row skipping).

The default run takes about ten minutes on 2 CPU cores; ``--quick`` checks the pipeline in a few.
Without ``--json`` the results go to ``anee_lite/data/sparsity_benchmark.json``, which notebook 06
and the README read; that file is only overwritten from a quiet machine (1-minute load <= 1.0
before the run, recorded in the JSON with the load after it) unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from machine import machine, refuse_unless_quiet

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.core.architectures import ModelDims
from anee_lite.core.metrics import perplexity, top1_agreement
from anee_lite.cost import matrix_params
from anee_lite.cost.devices import get_profile
from anee_lite.cost.simulator import simulate_decode
from anee_lite.io.files import write_atomically
from anee_lite.io.texts import eval_ids
from anee_lite.sparsity.evaluate import (
    RESULTS_FILE,
    best_levers,
    compute_scores,
    decode_time_ratio,
    format_activation,
    format_table,
    plan_levers,
    quality,
    timed_model,
)
from anee_lite.sparsity.speed import decode_speed, matvec_table

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
    parser.add_argument("--force", action="store_true", help="overwrite the shipped results even from a busy machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.decode_tokens, args.repeats, args.points = 96, 8, 2, [0.9, 0.7]
    out = args.json or (DATA / RESULTS_FILE if not args.quick else Path("sparsity_quick.json"))
    about = machine()
    refuse_unless_quiet(about["load_before"], shipped=out.resolve() == (DATA / RESULTS_FILE).resolve(),
                        force=args.force)
    start = time.perf_counter()

    wrapper = ANEEWrapper(ANEEConfig(model_name=args.model))
    hf, tokenizer, model = wrapper.hf_model, wrapper.tokenizer, wrapper.model
    cal = eval_ids(tokenizer, "python_docs_calibration", args.tokens)
    texts = {name: eval_ids(tokenizer, name, args.tokens) for name in TEXTS}
    full = {name: model(ids).logits for name, ids in texts.items()}
    n_prompt = 16
    timing_ids = texts["python_docs_heldout"][:, :n_prompt + args.decode_tokens]
    context = n_prompt + args.decode_tokens // 2

    print(f"scores on {cal.shape[1]} calibration tokens ...", flush=True)
    scores = compute_scores(model, cal)
    settings = plan_levers(model, scores, args.points, context, progress=print)

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

    print("activation sparsity: matrix-vector products, decoding speed, quality ...", flush=True)
    activation = activation_sparsity(wrapper, texts, full, quick=args.quick)
    results = {
        "model": args.model, "n_layers": model.dims.n_layers, "tokens": args.tokens,
        "decode_tokens": args.decode_tokens, "repeats": args.repeats, "context_len_for_cost": context, **about,
        "note": "wall-time: median of alternating full/lever decode pairs, batch 1, KV cache",
        "full": {name: {"perplexity": quality(model, ids, full[name], {})["perplexity"]}
                 for name, ids in texts.items()},
        "rows": rows, "activation": activation, "pruned_bytes_prediction": pruned_bytes_prediction(rows),
        "projection_7b": projection_7b(), "seconds": time.perf_counter() - start,
        "load_after": list(os.getloadavg()),
    }
    write_atomically(out, json.dumps(results, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(format_table(results))
    for (target, text), r in sorted(best_levers(results).items()):
        print(f"best at {target} on {text}: {r['lever']} ({r['label']}), agreement {r[text]['agreement']:.3f}")
    if args.plot:
        from anee_lite.notebook.sparsity import plot_sparsity_pareto

        ax = plot_sparsity_pareto(results)
        ax.figure.savefig(args.plot, dpi=110, bbox_inches="tight")
    print(format_activation(results))
    print(f"wrote {out} in {results['seconds']:.0f}s; load before {about['load_before'][0]:.2f}, "
          f"after {results['load_after'][0]:.2f}")


ACTIVATION_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
TIMING_PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\""
# Llama-2-7B's sizes (its config.json): what the same lever would save on a model 50x larger.
LLAMA2_7B = ModelDims("llama", d_model=4096, n_heads=32, n_kv_heads=32, d_head=128, d_mlp=11008, n_layers=32,
                      d_vocab=32000, n_ctx=4096)
PROJECTED = (("t4", "fp16"), ("snapdragon-8-gen-3", "int4"))  # a 7B model in fp16 fits a T4; a phone needs int4


def activation_sparsity(wrapper, texts: dict, full: dict, *, quick: bool) -> dict:
    """Matvec micro-benchmark per matrix shape, user-path decoding speed, and quality at each sparsity."""
    model = wrapper.model
    shapes = {}
    for name in ("W_QKV", "W_O", "W_mlp_in", "W_out"):
        w = getattr(model.arch.blocks[0], name)
        shapes[name] = list(w.shape)
    fractions = (0.0, 0.3, 0.5, 0.7) if quick else (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    matvec = {name: matvec_table(*shape, fractions, matrix=name, repeats=3 if quick else 7)
              for name, shape in shapes.items()}
    levels = (0.0, 0.3, 0.5) if quick else ACTIVATION_FRACTIONS
    speed = decode_speed(wrapper, TIMING_PROMPT, levels, max_new_tokens=8 if quick else 24, rounds=2 if quick else 5)
    rows = []
    for f in levels:
        spec = wrapper.activation_thresholds(f) if f else None
        row = {"fraction": f, "ms_per_token": 1e3 * speed[f]["seconds_per_token"], "speedup": speed[f]["speedup"],
               "text": speed[f]["text"]}
        for name, ids in texts.items():
            logits = model(ids, activation_sparsity=spec).logits
            row[name] = {"agreement": top1_agreement(logits, full[name]), "perplexity": perplexity(logits, ids)}
        rows.append(row)
    reaching = [r["fraction"] for r in rows if r["speedup"] is not None and r["speedup"] >= 1.3]
    keeping = [r for r in rows if r["python_docs_heldout"]["agreement"] >= 0.9]
    best_kept = max(keeping, key=lambda r: r["fraction"]) if keeping else None
    return {"shapes": shapes, "matvec": matvec, "decode": rows,
            "first_fraction_reaching_1_3x": min(reaching) if reaching else None,
            "largest_fraction_with_agreement_0_9": None if best_kept is None else best_kept["fraction"],
            "its_speedup": None if best_kept is None else best_kept["speedup"]}


def pruned_bytes_prediction(rows: list[dict]) -> list[dict]:
    """For the physically pruned models: measured decode-time ratio against the bytes the cost model predicts."""
    out = []
    for r in rows:
        if r["lever"] in ("head pruning", "neuron pruning") and "wall_ratio" in r:
            out.append({"label": r["label"], "bytes_fraction": r["bytes_fraction"], "wall_ratio": r["wall_ratio"],
                        "error": r["wall_ratio"] / r["bytes_fraction"] - 1})
    return out


def projection_7b() -> list[dict]:
    """Simulated decode time and energy per token of Llama-2-7B with activation sparsity (ideal row skipping)."""
    params = matrix_params(LLAMA2_7B)
    block = LLAMA2_7B.n_layers * sum(params.values())
    total = block + LLAMA2_7B.d_model * LLAMA2_7B.d_vocab  # the unembedding is not sparsified
    out = []
    for device, dtype in PROJECTED:
        profile = get_profile(device)
        dense = simulate_decode(LLAMA2_7B, profile, context=512, dtype=dtype, kernels="fused")
        for f in (0.0, 0.4, 0.5, 0.7):
            kept = (total - f * block) / total  # share of matrix weights still read
            sim = simulate_decode(LLAMA2_7B, profile, context=512, dtype=dtype, kernels="fused", weight_fraction=kept)
            out.append({"device": device, "dtype": dtype, "fraction": f, "weight_fraction": kept,
                        "ms_per_token": 1e3 * sim.seconds_per_token, "mj_per_token": 1e3 * sim.joules_per_token,
                        "speedup": dense.seconds_per_token / sim.seconds_per_token})
    return out


if __name__ == "__main__":
    main()
