"""The simulator against this machine: predicted vs measured cached decoding of SmolLM2-135M (slow).

The ``local`` profile is measured by the micro-benchmark in the same run, between the decoding
measurements (nothing is fitted to the decoding); medians of alternating rounds are compared.
On a heavily shared machine the measurements are noisy: ``benchmarks/bench_simulator.py`` prints the
full table.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.cost.devices import profile_from_measurements, run_micro_benchmark
from anee_lite.cost.simulator import prefill_plan, simulate_plan, static_plan

PROMPT, STEPS, PREFILL, ROUNDS = 32, 10, 128, 2


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="validation not yet demonstrated: on the shared 2-core machine the micro-benchmark "
                   "and the decoding it predicts saw different loads (errors +8..+23% in one run, -46..-66% in "
                   "another; README 'Virtual accelerator'); an XPASS on a quiet machine is the goal")
def test_local_prediction_matches_measured_decoding(smollm2_hf):
    model = UnrolledModel(smollm2_hf[0])
    dims = model.dims
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, dims.d_vocab, (1, PROMPT), generator=gen)
    long_ids = torch.randint(0, dims.d_vocab, (1, PREFILL), generator=gen)
    layer_counts = [L for L in (30, 22, 15, 8) if L <= dims.n_layers]
    measured = {k: [] for k in [*layer_counts, "prefill"]}
    predicted = {k: [] for k in measured}
    greedy_generate(model, ids, max_new_tokens=2)  # warm-up
    for r in range(ROUNDS):
        profile = profile_from_measurements(run_micro_benchmark(repeats=3))
        keys = list(measured)
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            if key == "prefill":
                start = time.perf_counter()
                with torch.no_grad():
                    model(long_ids, use_cache=True, logits_to_keep=1)
                measured[key].append(time.perf_counter() - start)
                predicted[key].append(simulate_plan(dims, profile, prefill_plan(PREFILL, dims.n_layers)).seconds)
            else:
                run = greedy_generate(model, ids, max_new_tokens=STEPS + 1, exit_layers=key)
                measured[key].append(statistics.median(run.step_times[1:]))
                predicted[key].append(simulate_plan(dims, profile, static_plan(STEPS, key),
                                                    context=PROMPT).seconds_per_token)
    errors = {k: statistics.median(predicted[k]) / statistics.median(measured[k]) - 1 for k in measured}
    print({k: f"{v:+.1%}" for k, v in errors.items()})
    for k, err in errors.items():
        assert abs(err) <= (0.25 if k == "prefill" else 0.20), (k, errors)
