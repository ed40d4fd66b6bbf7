"""Self-speculative decoding on smollm2-135m: full-depth cached greedy vs draft-and-verify, side by side.

    python benchmarks/bench_speculative.py [--repeats 3] [--new-tokens 32] [--layers 9 18 27] [--tokens 1 3]
                                           [--threads N] [--out results.json]

Prompts: the first 40 tokens of a shipped in-domain text (python_docs_heldout) and an out-of-domain
one (kjv_heldout). Two parts:

1. Acceptance for EVERY draft depth and both lenses, from one full-depth pass: a judged draft always
   sits on the full model's own greedy path (everything before it was accepted), so the acceptance
   rate a(L, lens) is exactly how often the lens at layer L agrees with the full model's next token
   along the greedy continuation. Printed with the formula's prediction on a memory-bound GPU
   (c and v from the byte counts in :mod:`anee_lite.cost.speculative`).
2. Timing: full-depth cached greedy and each (L, K, lens) setting of the grid, every variant once per
   round in a rotating order so that machine load hits all alike; medians over rounds. Each row shows the
   measured speed-up and the Leviathan et al. (2023) prediction E / (K c + v) from its own measured a,
   c (draft time per drafted token) and v (verify time per round), both relative to the median
   full-depth step. Every speculative output is checked to equal the full-depth text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from machine import machine, refuse_unless_quiet
from tqdm.auto import tqdm

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.adaptive import acceptance_by_depth
from anee_lite.adaptive.evaluate import load_lens
from anee_lite.cost import memory_bound_costs
from anee_lite.decoding.speculative import expected_speedup, expected_tokens_per_round
from anee_lite.io import eval_ids
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained

TEXTS = {"in-domain (python_docs_heldout)": "python_docs_heldout", "out-of-domain (kjv_heldout)": "kjv_heldout"}
N_PROMPT = 40
SHIPPED = Path(__file__).resolve().parents[1] / "anee_lite" / "data" / "smollm2-135m_speculative_bench.json"


def time_variants(model, ids, variants: dict, n_new: int, repeats: int) -> dict:
    """{name: {"seconds": [...], "result": last GenerationResult}}, rounds in rotating order."""
    runs = {name: {"seconds": [], "result": None} for name in variants}
    names = list(variants)
    for r in tqdm(range(repeats), desc="rounds", leave=False):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            result = greedy_generate(model, ids, max_new_tokens=n_new, **variants[name])
            runs[name]["seconds"].append(time.perf_counter() - start)
            runs[name]["result"] = result
    return runs


def summarise(runs: dict, n_new: int) -> list[dict]:
    """One row per variant: medians, measured speed-up, measured a/c/v and the formula's prediction."""
    base = statistics.median(runs["full depth"]["seconds"])
    step = statistics.median(runs["full depth"]["result"].step_times[1:])  # one full-depth step, prefill excluded
    expected = runs["full depth"]["result"].sequences
    rows = []
    for name, run in runs.items():
        seconds = statistics.median(run["seconds"])
        row = {"setting": name, "seconds": seconds, "tokens_per_s": n_new / seconds, "speedup": base / seconds}
        stats = run["result"].speculative
        if stats is not None:
            if not torch.equal(run["result"].sequences, expected):
                raise AssertionError(f"{name} changed the text: speculative decoding must not")
            a, k = stats.acceptance_rate, stats.draft_tokens
            c = stats.draft_seconds / stats.drafted / step
            v = stats.verify_seconds / stats.rounds / step
            row.update(acceptance=a, tokens_per_verify=stats.tokens_per_verify, c=c, v=v,
                       E=expected_tokens_per_round(a, k), predicted=expected_speedup(a, k, c, v))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (medians reported); default 3")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run; default 32")
    parser.add_argument("--layers", type=int, nargs="+", default=[12, 21, 27], help="draft depths L to time")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 3], help="draft lengths K to time")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, every core, as on the user's path)")
    parser.add_argument("--out", default=None, help="write every number as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite the shipped JSON even from a busy machine")
    args = parser.parse_args()
    about = machine()
    shipped = args.out is not None and Path(args.out).resolve() == SHIPPED.resolve()
    refuse_unless_quiet(about["load_before"], shipped=shipped, force=args.force)
    if args.repeats < 1 or args.new_tokens < 2:
        parser.error("--repeats must be >= 1 and --new-tokens >= 2")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()

    hf, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf)
    tuned, tuned_layers = load_lens(model, "smollm2-135m", "tuned")
    logit, _ = load_lens(model, "smollm2-135m", "logit")
    report = {"threads": args.threads, "new_tokens": args.new_tokens, "repeats": args.repeats, **about, "texts": {}}
    for title, name in TEXTS.items():
        ids = eval_ids(tokenizer, name, N_PROMPT)
        rates = acceptance_by_depth(model, {"logit": logit, "tuned": tuned}, ids, args.new_tokens)
        print(f"\n## {title}: acceptance a(L) of the draft (agreement with the full model on its greedy path)\n")
        print("| L | a logit | a tuned | c, v on a memory-bound GPU | predicted GPU speed-up, best K (logit / tuned) |")
        print("|---|---|---|---|---|")
        for L in range(1, model.dims.n_layers):
            c, v = memory_bound_costs(model.dims, L, N_PROMPT + args.new_tokens)
            best = []
            for lens in ("logit", "tuned"):
                a = rates[lens].get(L)
                if a is None:
                    best.append("-")
                    continue
                k, s = max(((k, expected_speedup(a, k, c, v)) for k in range(1, 9)), key=lambda t: t[1])
                best.append(f"{s:.2f}x (K={k})")
            at = rates["tuned"].get(L)
            print(f"| {L} | {rates['logit'][L]:.2f} | {'-' if at is None else f'{at:.2f}'} | {c:.2f}, {v:.2f} | "
                  f"{' / '.join(best)} |")

        variants = {"full depth": {}}
        for L in args.layers:
            for K in args.tokens:
                variants[f"L={L} K={K} logit"] = {"draft_layers": L, "draft_tokens": K}
                if L in tuned_layers:
                    variants[f"L={L} K={K} tuned"] = {"draft_layers": L, "draft_tokens": K, "draft_lens": tuned}
        rows = summarise(time_variants(model, ids, variants, args.new_tokens, args.repeats), args.new_tokens)
        print(f"\n## {title}: {args.new_tokens} new tokens, medians of {args.repeats} rotating rounds, "
              f"{args.threads} thread(s), identical text in every row\n")
        print("| setting | tokens/s | measured speed-up | a | tokens/verify | c | v | predicted E/(Kc+v) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            extra = (f"{r['acceptance']:.2f} | {r['tokens_per_verify']:.2f} | {r['c']:.2f} | {r['v']:.2f} | "
                     f"{r['predicted']:.2f}x" if "acceptance" in r else "- | 1 | - | 1 | 1x")
            print(f"| {r['setting']} | {r['tokens_per_s']:.2f} | {r['speedup']:.2f}x | {extra} |")
        best = max(rows[1:], key=lambda r: r["speedup"])
        print(f"\nbest: {best['setting']} at {best['speedup']:.2f}x measured ({best['predicted']:.2f}x predicted)")
        report["texts"][name] = {"acceptance": rates, "rows": rows}
    if args.out:
        report["load_after"] = list(os.getloadavg())
        write_atomically(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
