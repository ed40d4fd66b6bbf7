"""Greedy generation speed on smollm2-135m: anee-lite's KV cache against HF ``generate`` and the seed's recompute.

    python benchmarks/bench_generate.py [--repeats 5] [--quick] [--threads N] [--out results.json]

A 32-token English prompt, 64 new greedy tokens. Every variant is timed in every round, in a
rotating order, so that drifting machine load hits them alike; medians are reported. Wrapping a
model with ``share_weights=True`` (as the library does with models it loads) re-lays out its
weights as [in, out] views (faster on CPU), which also speeds up the HF model that shares them, so
HF is timed twice: on a second copy left as loaded, and on the shared, re-laid-out weights. Static exits are compared with the ideal decoding step predicted from the
measured time of one layer and of the unembedding (measured / ideal > 1 is fixed overhead).

The speed limit is measured in the same run, once per round: the ``local`` micro-benchmark's
matrix-vector bandwidth (the forward's own products on matrices no model uses, 512 MiB of them per size,
as much as a model's step streams) and its streaming
bandwidth (``torch.sum`` on every thread); the weights one token reads divided by each is the fastest a
decoding step could be if it did nothing but read weights. Beside them, one pass of the step's own
products and nothing else (``step_products_seconds``) splits the gap: what the products themselves
lose to that limit (each product's fixed cost, matrices of a few MB), and what the rest of the step adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from machine import machine
from tqdm import tqdm

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.cost import full_token_cost, layer_and_unembed_seconds, step_products_seconds, token_cost
from anee_lite.cost.devices import run_micro_benchmark
from anee_lite.cost.simulator import model_weight_bytes
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained

PROMPT = ("The printing press changed Europe within a single lifetime. Before it, every book was copied by hand, "
          "so a library of a few hundred volumes was a treasure and most people never owned a book at all.")
N_PROMPT, N_NEW = 32, 64


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def prompt_ids(tokenizer) -> torch.Tensor:
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]  # [1, T]
    if ids.shape[1] < N_PROMPT:
        raise ValueError(f"the benchmark prompt must be at least {N_PROMPT} tokens, got {ids.shape[1]}")
    return ids[:, :N_PROMPT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians reported); default 5")
    parser.add_argument("--quick", action="store_true", help="2 rounds and no recompute baseline")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the medians, the limit and the machine's load as JSON here")
    args = parser.parse_args()
    about = machine()  # the load before this run's own threads raise it
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats

    hf_as_loaded, tokenizer = load_pretrained("smollm2-135m")
    hf_shared, _ = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf_shared, share_weights=True)  # re-lays out hf_shared; hf_as_loaded keeps HF's layout
    n = model.dims.n_layers
    ids = prompt_ids(tokenizer)
    static = {f"anee exit {round(100 * L / n)}% ({L} layers)": L for L in (round(n * f) for f in (0.75, 0.5, 0.25))}

    def hf_generate(hf):
        return lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
                                   min_new_tokens=N_NEW, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    runs = {
        "anee full depth, cache": lambda: greedy_generate(model, ids, max_new_tokens=N_NEW),
        "HF generate, as loaded": hf_generate(hf_as_loaded),
        "HF generate, anee's layout": hf_generate(hf_shared),
        **{name: (lambda L=L: greedy_generate(model, ids, max_new_tokens=N_NEW, exit_layers=L))
           for name, L in static.items()},
    }
    if not args.quick:
        runs["anee full depth, recompute (seed)"] = lambda: greedy_generate(model, ids, max_new_tokens=N_NEW,
                                                                           use_cache=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; smollm2-135m, {N_PROMPT}-token prompt, "
          f"{N_NEW} new tokens, {repeats} rounds\n")

    outputs = {name: fn() for name, fn in tqdm(runs.items(), desc="warm-up", leave=False)}
    same = torch.equal(outputs["anee full depth, cache"].sequences, outputs["HF generate, as loaded"])
    totals = {name: [] for name in runs}
    steps = {name: [] for name in runs}  # per-token decode times (step 0, the prefill, left out)
    names = list(runs)
    limits = []  # per round: the micro-benchmark, side by side with the decoding it bounds
    products = []  # per round: one pass of a full-depth step's own products and nothing else
    for r in tqdm(range(repeats), desc="rounds", leave=False):
        limits.append(run_micro_benchmark())
        products.append(step_products_seconds(model, repeats=5))
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order each round
            seconds, out = timed(runs[name])
            totals[name].append(seconds)
            if hasattr(out, "step_times"):
                steps[name].extend(out.step_times[1:])
    layer_s, head_s = layer_and_unembed_seconds(model, context_len=N_PROMPT + N_NEW // 2, repeats=max(5, repeats))

    med = {name: statistics.median(v) for name, v in totals.items()}
    base = med["anee full depth, cache"]
    print(f"{'variant':<34} {'median s':>9} {'tokens/s':>9} {'ms/step':>8} {'vs anee full':>13}")
    for name in runs:
        step_ms = f"{1e3 * statistics.median(steps[name]):8.1f}" if steps[name] else f"{'-':>8}"
        print(f"{name:<34} {med[name]:9.2f} {N_NEW / med[name]:9.1f} {step_ms} {med[name] / base:12.2f}x")
    hf_loaded, hf_relaid = med["HF generate, as loaded"], med["HF generate, anee's layout"]
    print(f"\nanee full depth is {hf_loaded / base:.2f}x as fast as HF generate as loaded, "
          f"{hf_relaid / base:.2f}x on the re-laid-out weights; same tokens as HF: {same}")
    if "anee full depth, recompute (seed)" in med:
        print(f"the KV cache is {med['anee full depth, recompute (seed)'] / base:.1f}x as fast as recomputing")

    weights = model_weight_bytes(model.dims, "fp32")  # what one full-depth step reads, the unembedding included
    matvec = statistics.median(m.matvec_bandwidth for m in limits)
    stream = statistics.median(m.stream_bandwidth for m in limits)
    step = statistics.median(steps["anee full depth, cache"])
    print(f"\nlimit: {weights / 1e6:.0f} MB of weights per token; matrix-vector bandwidth {matvec / 1e9:.1f} GB/s -> "
          f"{matvec / weights:.1f} tokens/s; streaming {stream / 1e9:.1f} GB/s -> {stream / weights:.1f} tokens/s")
    print(f"full-depth decoding step {1e3 * step:.1f} ms = {1 / step:.1f} tokens/s: "
          f"{weights / matvec / step:.2f} of the matrix-vector limit, {weights / stream / step:.2f} of streaming")
    alone = statistics.median(products)
    print(f"the step's products alone (its own weights, nothing between them) {1e3 * alone:.1f} ms = "
          f"{weights / alone / 1e9:.1f} GB/s: {weights / matvec / alone:.2f} of the matrix-vector limit; "
          f"everything else (norms, attention, cache, Python) {1e3 * (step - alone):.1f} ms, "
          f"{(step - alone) / step:.2f} of the step")

    context = N_PROMPT + N_NEW // 2
    full = full_token_cost(model.dims, context)
    one_layer = token_cost(model.dims, layers_run=1, context_len=context, unembed=False)
    print(f"\nmeasured: one layer {1e3 * layer_s:.2f} ms, final norm + unembedding {1e3 * head_s:.2f} ms "
          f"({head_s / layer_s:.1f} layers' worth; {full.lm_head / one_layer.macs:.1f} by FLOPs)")
    print(f"{'static exit':<34} {'ms/step':>8} {'ideal ms':>9} {'measured/ideal':>15} {'FLOPs share':>12}")
    for name, L in [("anee full depth, cache", n), *static.items()]:
        measured = statistics.median(steps[name])
        ideal = L * layer_s + head_s
        share = token_cost(model.dims, layers_run=L, context_len=context).flops / full.flops
        print(f"{name:<34} {1e3 * measured:8.1f} {1e3 * ideal:9.1f} {measured / ideal:15.2f} {share:12.2f}")

    print(f"\n{'KV cache after the run':<34} {'MiB':>8}")
    sequence = outputs["anee full depth, cache"].sequences
    for name, L in [("anee full depth, cache", n), *static.items()]:
        cache = model(sequence[:, :-1], exit_layers=L, use_cache=True).past_key_values
        print(f"{name:<34} {cache.nbytes() / 2**20:8.2f}")
    hf_bytes = 2 * n * model.dims.n_kv_heads * model.dims.d_head * (sequence.shape[1] - 1) * 4
    print(f"{'HF DynamicCache (K and V only)':<34} {hf_bytes / 2**20:8.2f}")

    if args.out:
        report = {**about, "load_after": list(os.getloadavg()), "torch": torch.__version__, "rounds": repeats,
                  "prompt_tokens": N_PROMPT, "new_tokens": N_NEW, "same_tokens_as_hf": same,
                  "median_seconds": med, "tokens_per_s": {k: N_NEW / v for k, v in med.items()},
                  "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in steps.items() if v},
                  "weight_bytes_per_token": weights, "matvec_bandwidth": matvec, "stream_bandwidth": stream,
                  "share_of_matvec_limit": weights / matvec / step, "share_of_stream_limit": weights / stream / step,
                  "products_alone_ms": 1e3 * alone, "products_share_of_matvec_limit": weights / matvec / alone,
                  "layer_ms": 1e3 * layer_s, "unembed_ms": 1e3 * head_s}
        write_atomically(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
