"""The virtual accelerator against this machine: predicted vs measured decode and prefill time of smollm2-135m.

    python benchmarks/bench_simulator.py [--rounds 3] [--new-tokens 24] [--prompt 32] [--prefill 32 128 512]
                                         [--threads N] [--out results.json]

Each round first re-runs the ``local`` micro-benchmark (streaming bandwidth, matrix-vector and
matrix-matrix and attention throughput, per-op overhead; nothing in it is fitted to the decoding below),
then measures cached greedy decoding at 30, 20, 15 and 8 layers, decoding with the shipped ``learned``
controller under catch-up (the default with a controller; threshold 0.76, what catch-up calibration chose
for agreement 0.80, on a prompt of held-out Python docs: tokens stop at different layers and the later
ones catch them up), and prefills of each length, in a rotating order.
The prediction of a round uses that round's profile, so machine load drifts hit both alike.
Medians over rounds are reported, predicted vs measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from machine import machine
from tqdm.auto import tqdm

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.adaptive.evaluate import build_controller
from anee_lite.cost.devices import profile_from_measurements, run_micro_benchmark
from anee_lite.cost.simulator import plan_from_generation, prefill_plan, simulate_plan, static_plan
from anee_lite.io import eval_ids
from anee_lite.io.files import write_atomically
from anee_lite.io.loading import load_pretrained

LAYERS = (30, 20, 15, 8)
CONTROLLED = "decode learned, catch-up"
LEARNED_THRESHOLD = 0.76  # anee_lite/data/smollm2-135m_adaptive_catch_up_bench.json: calibrated for 0.80


def measure_decode(model, ids, layers: int, new_tokens: int) -> float:
    """Median seconds of one cached decoding step (the prefill step left out)."""
    result = greedy_generate(model, ids, max_new_tokens=new_tokens + 1, exit_layers=layers)
    return statistics.median(result.step_times[1:])


@torch.no_grad()
def measure_prefill(model, ids) -> float:
    start = time.perf_counter()
    model(ids, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - start


def controlled_decode(model, ids, controller, new_tokens: int):
    """One cached generation with ``controller`` deciding exits (catch-up, the default); its mean seconds per step."""
    result = greedy_generate(model, ids, max_new_tokens=new_tokens + 1, controller=controller)
    return result, statistics.mean(result.step_times[1:])  # steps differ: the plan's seconds_per_token is a mean


def predict_decode(dims, profile, layers: int, prompt: int, new_tokens: int) -> float:
    # Decoding step i (1..new_tokens) attends over prompt + i keys: the prompt is cached before the first one.
    return simulate_plan(dims, profile, static_plan(new_tokens, layers), context=prompt).seconds_per_token


def validate(model, ids_decode, prefills: dict, rounds: int, new_tokens: int, progress: bool = True,
             controlled: tuple | None = None) -> dict:
    """Predicted and measured seconds per variant, per round: ``{variant: {"predicted": [...], "measured": [...]}}``.

    ``controlled``: (controller, [1, T] prompt ids) to time decoding with the controller deciding exits too.
    """
    dims = model.dims
    layers = [L for L in LAYERS if L <= dims.n_layers] or [dims.n_layers]
    variants = [f"decode {L} layers" for L in layers] + list(prefills)  # prefills: {"prefill N": [1, N] ids}
    variants += [CONTROLLED] if controlled else []
    out = {v: {"predicted": [], "measured": []} for v in variants}
    prompt = ids_decode.shape[1]
    measure_decode(model, ids_decode, layers[0], 2)  # warm-up
    for r in tqdm(range(rounds), desc="rounds", disable=not progress):
        profile = profile_from_measurements(run_micro_benchmark())
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            if v == CONTROLLED:
                controller, ids = controlled
                result, seconds = controlled_decode(model, ids, controller, new_tokens)
                plan = plan_from_generation(result, exit_charges=controller.charges)
                out[v]["measured"].append(seconds)
                out[v]["predicted"].append(simulate_plan(dims, profile, plan, context=ids.shape[1]).seconds_per_token)
            elif v in prefills:
                out[v]["measured"].append(measure_prefill(model, prefills[v]))
                out[v]["predicted"].append(simulate_plan(dims, profile,
                                                         prefill_plan(prefills[v].shape[1], dims.n_layers)).seconds)
            else:
                L = int(v.split()[1])
                out[v]["measured"].append(measure_decode(model, ids_decode, L, new_tokens))
                out[v]["predicted"].append(predict_decode(dims, profile, L, prompt, new_tokens))
    return out


def summary(results: dict) -> list[dict]:
    """Medians and the error of the prediction, one row per variant."""
    rows = []
    for v, d in results.items():
        measured, predicted = statistics.median(d["measured"]), statistics.median(d["predicted"])
        rows.append({"variant": v, "measured_ms": 1e3 * measured, "predicted_ms": 1e3 * predicted,
                     "error": predicted / measured - 1})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians reported); default 3")
    parser.add_argument("--new-tokens", type=int, default=24, help="decoding steps timed per variant; default 24")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens before decoding; default 32")
    parser.add_argument("--prefill", type=int, nargs="+", default=[32, 128, 512],
                        help="prompt lengths of the prefills; default 32 128 512")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the table, the last profile and the machine's load as JSON")
    args = parser.parse_args()
    for name in ("rounds", "new_tokens", "prompt", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.prefill) < 1:
        parser.error(f"--prefill lengths must be >= 1, got {args.prefill}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    about = machine()  # the load before this run's own threads raise it
    hf, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf)
    learned = build_controller(model, "smollm2-135m", "learned", threshold=LEARNED_THRESHOLD)
    gen = torch.Generator().manual_seed(0)
    ids_decode = torch.randint(0, model.dims.d_vocab, (1, args.prompt), generator=gen)
    prefills = {f"prefill {n}": torch.randint(0, model.dims.d_vocab, (1, n), generator=gen) for n in args.prefill}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; smollm2-135m fp32; "
          f"{args.rounds} rounds; decode: {args.prompt}-token prompt, {args.new_tokens} steps; "
          f"prefill: {', '.join(map(str, args.prefill))} tokens")
    results = validate(model, ids_decode, prefills, args.rounds, args.new_tokens,
                       controlled=(learned, eval_ids(tokenizer, "python_docs_heldout", args.prompt)))
    rows = summary(results)
    print(f"\n{'variant':<25} {'measured ms':>12} {'predicted ms':>13} {'error':>7}")
    for row in rows:
        print(f"{row['variant']:<25} {row['measured_ms']:12.1f} {row['predicted_ms']:13.1f} {row['error']:+7.1%}")
    profile = profile_from_measurements(run_micro_benchmark())
    print(f"\nlast local profile: bandwidth {profile.bytes_per_second() / 1e9:.1f} GB/s (matrix-vector), "
          f"matmul {profile.peak_flops['fp32'] / 1e9:.0f} GFLOP/s, op overhead {1e6 * profile.op_overhead_s:.1f} us, "
          f"matrix-vector overhead {1e6 * profile.matmul_overhead_s:.1f} us, attention at "
          f"{profile.attention_efficiency:.2f} of the matmul rate, "
          + ", ".join(f"{rows} rows {factor:.2f}x" for rows, factor in profile.few_rows_slowdown) + " one row's time")
    if args.out:
        report = {**about, "load_after": list(os.getloadavg()), "torch": torch.__version__, "rounds": args.rounds,
                  "new_tokens": args.new_tokens, "prompt": args.prompt, "rows": rows, "last_profile": profile.as_dict()}
        write_atomically(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
