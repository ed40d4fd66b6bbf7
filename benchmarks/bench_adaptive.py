"""Adaptive early exit on smollm2-135m: which controller pays, in and out of domain, all overheads counted.

    python benchmarks/bench_adaptive.py [--max-tokens 512] [--decode-tokens 256] [--target 0.9]
                                        [--controllers learned static ...] [--json OUT]

1. Pareto table (replayed on full-depth residuals, see :mod:`anee_lite.adaptive.calibration`): for each
   controller, the best top-1 agreement reachable at <= 50/70/85% of the full model's cost, on
   held-out Python docs (in domain) and held-out King James Bible (out of domain).
2. Calibrated point: each controller's threshold is chosen on the Python-docs calibration text
   for ``--target`` agreement, then *measured* by teacher-forced decoding (real early-exit forward,
   K/V propagation, wall time) on both held-out texts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from anee_lite.adaptive.calibration import best_at_cost, build_replay, calibrate, sweep, text_chunks
from anee_lite.adaptive.controllers import make_controller
from anee_lite.adaptive.evaluate import build_controller, evaluate
from anee_lite.core.model import UnrolledModel
from anee_lite.io.assets import DATA_DIR, SMOLLM2_EXIT_LAYERS
from anee_lite.io.loading import load_pretrained
from anee_lite.lens import LogitLens

COST_LEVELS = (0.5, 0.7, 0.85)
# label -> (controller name, lens, exits allowed at every layer?)
SETUPS = {
    "static": ("static", "auto", False),
    "confidence": ("confidence", "auto", False),
    "margin": ("margin", "auto", False),
    "entropy": ("entropy", "auto", False),
    "saturation": ("saturation", "auto", False),
    "patience": ("patience", "auto", False),
    "learned": ("learned", "auto", False),
    "static/logit/all": ("static", "logit", True),
    "confidence/logit/all": ("confidence", "logit", True),
}


def make(model, label):
    name, lens, every_layer = SETUPS[label]
    if every_layer:
        return make_controller(name, LogitLens(model))
    return build_controller(model, "smollm2-135m", name, lens=lens)


def oracle_cost(replay, controller) -> float:
    """Cost fraction of an oracle that stops each token at the first allowed layer whose readout is already right.

    No controller with the same readout and exits can reach agreement 1.0 for less (checks free).
    """
    import torch

    from anee_lite.cost import cost_fraction, early_exit_cost

    n = controller.n_layers
    exits = torch.full((replay.n_tokens,), n)
    for layer in reversed(controller.exit_layers_allowed):
        right = replay.readout_top1(controller.lens, layer) == replay.final_top1
        exits = torch.where(right, torch.full_like(exits, layer), exits)
    def free_checks(exit_layer):  # only the readout (and its translator) is charged
        return {"readout_translator_macs": controller.lens.translator_macs(exit_layer)}

    spent, full = early_exit_cost(replay.model.dims, exits, replay.positions, replay.chunk_ids, free_checks)
    return cost_fraction(spent, full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=512, help="tokens of each text for the replayed curves")
    parser.add_argument("--decode-tokens", type=int, default=256, help="tokens decoded for the measured points")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--controllers", nargs="*", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--measure", nargs="*", default=["saturation", "confidence", "learned"], choices=list(SETUPS),
                        help="controllers to measure by real decoding (slow)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    hf_model, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf_model, share_weights=True)  # the library loaded it: no second copy
    texts = {k: (DATA_DIR / f"{k}.txt").read_text() for k in
             ("python_docs_calibration", "python_docs_heldout", "kjv_calibration", "kjv_heldout")}
    replays = {k: build_replay(model, text_chunks(tokenizer, t, max_tokens=args.max_tokens)) for k, t in texts.items()}
    print(f"model loaded and texts replayed in {time.perf_counter() - start:.0f} s; exits allowed at "
          f"{list(SMOLLM2_EXIT_LAYERS)} unless '/all'\n")

    results = {}
    head = "controller            " + "".join(f"  in@{c:.2f}" for c in COST_LEVELS) + \
        "".join(f" out@{c:.2f}" for c in COST_LEVELS)
    print("Best replayed top-1 agreement at <= cost fraction (in = Python docs held-out, out = KJV held-out)")
    print(head)
    for label in args.controllers:
        controller = make(model, label)
        curves = {k: sweep(replays[k], controller) for k in ("python_docs_heldout", "kjv_heldout")}
        cells = []
        for curve in curves.values():
            for c in COST_LEVELS:
                p = best_at_cost(curve, c)
                cells.append("     -  " if p is None else f"  {p.agreement:.3f} ")
        print(f"{label:<22}" + "".join(cells))
        cal_in = calibrate(replays["python_docs_calibration"], make(model, label), args.target)
        cal_kjv = calibrate(replays["kjv_calibration"], make(model, label), args.target)
        results[label] = {"curves": {k: [vars(p) for p in v] for k, v in curves.items()},
                          "calibrated_on_python_docs": {k: v for k, v in vars(cal_in).items() if k != "curve"},
                          "calibrated_on_kjv": {k: v for k, v in vars(cal_kjv).items() if k != "curve"}}

    oracle = make(model, "learned")
    print("oracle (stops where the tuned-lens readout first agrees; checks free): agreement 1.000 at cost "
          + ", ".join(f"{k[:10]} {oracle_cost(replays[k], oracle):.3f}" for k in ("python_docs_heldout", "kjv_heldout")))

    print(f"\nCalibrated on Python-docs calibration text for agreement {args.target}; replayed on held-out text")
    print("controller            threshold  cal.agree  in: agree  cost   out: agree  cost   (KJV-calibrated out: agree cost)")
    for label in args.controllers:
        r = results[label]
        thr = r["calibrated_on_python_docs"]["threshold"]
        row = []
        for k in ("python_docs_heldout", "kjv_heldout"):
            (p,) = sweep(replays[k], make(model, label), thresholds=[thr])
            row.append(p)
            r[f"replayed_{k}"] = vars(p)
        (q,) = sweep(replays["kjv_heldout"], make(model, label), thresholds=[r["calibrated_on_kjv"]["threshold"]])
        print(f"{label:<22}{thr:9.4g}  {r['calibrated_on_python_docs']['agreement']:9.3f}  {row[0].agreement:9.3f}"
              f"  {row[0].cost_fraction:.3f}  {row[1].agreement:11.3f}  {row[1].cost_fraction:.3f}"
              f"    {q.agreement:.3f} {q.cost_fraction:.3f}")

    print(f"\nMeasured by teacher-forced decoding ({args.decode_tokens} tokens, real early exit, wall time)")
    print("controller            text           agree   cost  layers  wall   wall/cost")
    for label in args.measure:
        thr = results[label]["calibrated_on_python_docs"]["threshold"]
        for k in ("python_docs_heldout", "kjv_heldout"):
            controller = make(model, label)
            controller.threshold = thr
            e = evaluate(model, tokenizer, texts[k], controller, max_tokens=args.decode_tokens)
            results[label][f"measured_{k}"] = {kk: v for kk, v in e.as_dict().items() if kk != "exits"}
            print(f"{label:<22}{k[:14]:<14} {e.agreement:6.3f} {e.cost_fraction:6.3f} {e.mean_layers_fraction:6.3f}"
                  f" {e.wall_time_ratio:6.3f}  {e.wall_time_ratio / e.cost_fraction:6.2f}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
