"""Adaptive early exit on smollm2-135m, measured by real token-by-token decoding only.

    python benchmarks/bench_adaptive.py [--controllers learned learned@11,15,19 saturation ...] [--targets 0.8 0.9]
                                        [--delta 0.1] [--cal-tokens 2048] [--eval-tokens 2048]
                                        [--chunk 128] [--wall-tokens 256] [--kv-fill catch_up|propagate]
                                        [--json OUT] [--force]

For each controller (``name@l1,l2,...`` limits its exit layers to those, a subset of the shipped lens's):

1. Calibrate on the Python-docs calibration text by real cached decoding, exited tokens' deeper keys and
   values filled as ``--kv-fill`` says (:mod:`anee_lite.core.cache`; default catch-up, as the library decodes)
   (:mod:`anee_lite.adaptive.real_calibration`): candidate thresholds tested safest first, the
   cheapest one whose Clopper-Pearson lower bound (confidence 1 - delta) reaches the target (fewest
   FLOPs; under catch-up, which saves no FLOPs, fewest bytes moved); then, as ``evaluate`` does, the
   first ``--speed-check-tokens`` calibration tokens are decoded at batch 1 with it and at full depth
   (:func:`anee_lite.adaptive.real_calibration.exit_that_pays`): where it is not faster, ``evaluate``
   switches exit off. The rows describe the cost model's choice, with the speed check beside them and,
   for a choice switched off, the wall time of the controller switched off.
2. Decode (in the same batch) the held-out Python docs (in domain) and held-out King James Bible (out of domain) with
   each chosen threshold: delivered agreement and cost fraction (every check, translator and K/V
   propagation charged).
3. Wall time at every target: batch-1 decoding of ``--wall-tokens`` held-out tokens, controller and full
   model alternating step by step (:func:`anee_lite.adaptive.evaluate.decode_teacher_forced`), the
   user's path.

Also printed: the oracle (every token stops at the first allowed layer whose readout already equals
the full model's top-1, checks free, replayed on full-depth states), the best any controller could
do with the same lens and exit layers. The JSON file is rewritten after every controller. By default it
is the shipped file of the ``--kv-fill`` run that notebook 05 and the README quote
(``anee_lite/data/smollm2-135m_adaptive_catch_up_bench.json``, or ``smollm2-135m_adaptive_bench.json`` with
``--kv-fill propagate``), which a run from a busy machine (1-minute load > 1) may not overwrite without ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from machine import machine, refuse_unless_quiet

from anee_lite.adaptive.calibration import build_replay, text_chunks
from anee_lite.adaptive.evaluate import build_controller, decode_teacher_forced
from anee_lite.adaptive.guarantee import CandidateThreshold, fixed_sequence_select
from anee_lite.adaptive.real_calibration import (
    SPEED_CHECK_TOKENS,
    candidate_grid,
    cheapest_by,
    decode_thresholds,
    exit_that_pays,
    never_exit,
    order_safest_first,
    summarize,
)
from anee_lite.core.cache import CONTROLLER_KV_FILL, KV_FILLS
from anee_lite.core.model import UnrolledModel
from anee_lite.cost import cost_fraction, early_exit_cost
from anee_lite.io import DATA_DIR, eval_text
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained

CONTROLLERS = ("learned", "candidate", "saturation", "confidence", "static", "patience", "entropy", "margin")
HELDOUT = {"in domain": "python_docs_heldout", "out of domain": "kjv_heldout"}
SHIPPED = {"propagate": DATA_DIR / "smollm2-135m_adaptive_bench.json",
           "catch_up": DATA_DIR / "smollm2-135m_adaptive_catch_up_bench.json"}


def make(model, spec):
    """A controller with the shipped tuned lens (and probe) and exit layers, or those after its ``@``."""
    name, _, layers = spec.partition("@")
    return build_controller(model, "smollm2-135m", name,
                            exit_layers=[int(l) for l in layers.split(",")] if layers else None)


def check_spec(spec: str) -> str:
    """``name`` or ``name@l1,l2,...`` with a known controller name and integer layers (argparse type)."""
    name, at, layers = spec.partition("@")
    if name not in CONTROLLERS or (at and not all(l.strip().isdigit() for l in layers.split(","))):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected one of {list(CONTROLLERS)}, optionally followed by "
                                         "@ and comma-separated exit layers, e.g. learned@11,15,19")
    return spec


def oracle(model, replay, controller, agreement: float = 1.0) -> float:
    """Cost fraction of the oracle reaching ``agreement`` with the controller's lens and exit layers.

    Tokens whose readout is right at some allowed layer stop at the first such layer; to reach
    ``agreement`` < 1 the oracle also lets the tokens with the most to save be wrong, stopping them
    at the first allowed layer. Checks are free, so no real controller can do better.

    Args:
        replay: :func:`~anee_lite.adaptive.calibration.build_replay` of the text (full-depth states).
    """
    n = controller.n_layers
    exits = torch.full((replay.n_tokens,), n)
    for layer in reversed(controller.exit_layers_allowed):
        right = replay.readout_top1(controller.lens, layer) == replay.final_top1
        exits = torch.where(right, torch.full_like(exits, layer), exits)
    may_miss = int((1 - agreement) * replay.n_tokens)
    if may_miss:
        worst = exits.argsort(descending=True)[:may_miss]  # [may_miss] the deepest oracle exits
        exits[worst] = controller.exit_layers_allowed[0]
    spent, full = early_exit_cost(model.dims, exits, replay.positions, replay.chunk_ids,
                                  lambda L: {"readout_translator_macs": controller.lens.translator_macs(L)})
    return cost_fraction(spent, full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controllers", nargs="*", default=["learned", "saturation", "confidence"], type=check_spec)
    parser.add_argument("--targets", nargs="*", type=float, default=[0.8, 0.9])
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--cal-tokens", type=int, default=2048, help="calibration tokens decoded per threshold")
    parser.add_argument("--eval-tokens", type=int, default=2048, help="held-out tokens decoded per threshold")
    parser.add_argument("--chunk", type=int, default=128, help="tokens per teacher-forced chunk")
    parser.add_argument("--candidates", type=int, default=8, help="thresholds tested per controller")
    parser.add_argument("--wall-tokens", type=int, default=256, help="held-out tokens timed at batch 1 (0: skip)")
    parser.add_argument("--batch-rows", type=int, default=256)
    parser.add_argument("--speed-check-tokens", type=int, default=SPEED_CHECK_TOKENS,
                        help=f"calibration tokens timed to check each choice pays (default {SPEED_CHECK_TOKENS}; 0: skip)")
    parser.add_argument("--kv-fill", choices=KV_FILLS, default=CONTROLLER_KV_FILL,
                        help=f"how exited tokens' deeper keys/values are filled (default {CONTROLLER_KV_FILL}, "
                             "as the library decodes with a controller)")
    parser.add_argument("--json", type=Path, default=None, help="default: the shipped JSON of this --kv-fill")
    parser.add_argument("--force", action="store_true", help="overwrite the shipped JSON even from a busy machine")
    args = parser.parse_args()
    args.json = SHIPPED[args.kv_fill] if args.json is None else args.json
    about = machine()  # the load before the run: its own threads raise it while it runs
    shipped = args.json.resolve() in {p.resolve() for p in SHIPPED.values()}
    refuse_unless_quiet(about["load_before"], shipped=shipped, force=args.force)
    fill = args.kv_fill
    start = time.perf_counter()
    hf_model, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf_model)

    def chunks(name, n):
        return text_chunks(tokenizer, eval_text(name), max_tokens=n, chunk=args.chunk)

    cal = chunks("python_docs_calibration", args.cal_tokens)
    held = {k: chunks(v, args.eval_tokens) for k, v in HELDOUT.items()}
    replays = {k: build_replay(model, ch) for k, ch in held.items()}  # full-depth states: one forward per text
    wall_chunks = chunks(HELDOUT["in domain"], args.wall_tokens) if args.wall_tokens else None
    results = {"args": {k: str(v) for k, v in vars(args).items()}, **about, "controllers": {}}
    print(f"model loaded in {time.perf_counter() - start:.0f} s; {sum(c.shape[1] for c in cal)} calibration "
          f"tokens, delta {args.delta}")
    texts = {"calibration": cal, **held}
    everything = [c for ch in texts.values() for c in ch]  # all texts decoded in one batch per controller
    index, at = {}, 0
    for label, ch in texts.items():
        index[label] = list(range(at, at + len(ch)))
        at += len(ch)
    for name in args.controllers:
        t0 = time.perf_counter()
        controller = make(model, name)
        grid = order_safest_first(controller, candidate_grid(model, cal, controller, min(args.targets),
                                                             args.candidates))
        runs = decode_thresholds(model, everything, controller, grid, batch_rows=args.batch_rows, desc=name,
                                 kv_fill=fill)
        curves = {label: summarize(model, controller, runs, everything, idx, kv_fill=fill)
                  for label, idx in index.items()}
        tested = [CandidateThreshold(lower_bound=0.0, **m) for m in curves["calibration"]]
        row = {"decode_seconds": time.perf_counter() - t0, "oracle": {}, "targets": {},
               "curves": curves}
        for target in args.targets:
            best = fixed_sequence_select(tested, target, args.delta, cheapest_by=cheapest_by(fill))
            pick = best if best is not None else tested[0]
            # The cost model's choice is what the rows below describe; the speed check says whether decoding keeps it.
            _, speed = exit_that_pays(model, cal, controller, pick.threshold, args.speed_check_tokens, fill)
            j = tested.index(pick)
            row["targets"][str(target)] = {
                "threshold": pick.threshold, "met": best is not None, "speed_check": speed,
                "calibration": vars(pick) | {"agreement": pick.agreement},
                **{label: {"agreement": curves[label][j]["agreements"] / curves[label][j]["tokens"],
                           "cost_fraction": curves[label][j]["cost_fraction"],
                           "bytes_fraction": curves[label][j]["bytes_fraction"],
                           "mean_layers_fraction": curves[label][j]["mean_layers_fraction"],
                           "tokens": curves[label][j]["tokens"]} for label in held}}
        for label, replay in replays.items():
            row["oracle"][label] = {str(a): oracle(model, replay, controller, a) for a in (1.0, 0.9)}
        if wall_chunks is not None:
            for target in args.targets:
                r = row["targets"][str(target)]
                controller.threshold = r["threshold"]
                run = decode_teacher_forced(model, wall_chunks, controller, kv_fill=fill)
                r["wall_time_ratio_in_domain"] = run["seconds"] / run["full_seconds"]
                if r["speed_check"] and r["speed_check"]["switched_off"]:  # what evaluate() then decodes with
                    controller.threshold = never_exit(controller)
                    run = decode_teacher_forced(model, wall_chunks, controller, kv_fill=fill)
                    r["switched_off_wall_time_ratio_in_domain"] = run["seconds"] / run["full_seconds"]
        results["controllers"][name] = row
        results["load_after"] = list(os.getloadavg())
        write_atomically(args.json, json.dumps(results, indent=1))  # after each controller: Ctrl-C keeps those done
        print(f"\n{name}: every text decoded under {len(grid)} thresholds in {row['decode_seconds']:.0f} s")
        print("  real-decoding curve (threshold: agreement/cost on calibration | in domain | out of domain)")
        for j, thr in enumerate(grid):
            print(f"  {thr:9.4g}: " + " | ".join(
                f"{curves[k][j]['agreements'] / curves[k][j]['tokens']:.3f}/{curves[k][j]['cost_fraction']:.3f}"
                for k in texts))
        print(f"  kv_fill={fill}; cost = FLOPs fraction, bytes = memory-traffic fraction")
        print("  target  threshold  bound  cal.agree  in: agree  cost   bytes  out: agree  cost   wall(in)")
        for target in args.targets:
            r = row["targets"][str(target)]
            c = r["calibration"]
            wall = r.get("wall_time_ratio_in_domain")
            print(f"  {target:6.2f}  {r['threshold']:9.4g}  {c['lower_bound']:.3f}  {c['agreement']:9.3f}"
                  f"  {r['in domain']['agreement']:9.3f}  {r['in domain']['cost_fraction']:.3f}"
                  f"  {r['in domain']['bytes_fraction']:.3f}"
                  f"  {r['out of domain']['agreement']:11.3f}  {r['out of domain']['cost_fraction']:.3f}"
                  f"   {'-' if wall is None else f'{wall:.3f}'}" + ("" if r["met"] else "  (target not met)")
                  + ("" if not r["speed_check"] else f"  (speed check: {r['speed_check']['time_ratio']:.3f}x"
                     + (", switched off)" if r["speed_check"]["switched_off"] else ", kept)")))
        print("  oracle cost (replayed, checks free): " + ", ".join(
            f"{k} {v['1.0']:.3f} @1.0 / {v['0.9']:.3f} @0.9" for k, v in row["oracle"].items()))
    print(f"\ntotal {time.perf_counter() - start:.0f} s (machine shared: timings are noisy)")


if __name__ == "__main__":
    main()
