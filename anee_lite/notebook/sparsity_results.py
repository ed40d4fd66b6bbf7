"""Notebook 06's window on the shipped sparsity benchmark (``anee_lite/data/sparsity_benchmark.json``).

``benchmarks/bench_sparsity.py`` writes that file; the notebook, the README and this module read the
same rows. :func:`load_benchmark` says clearly when the file is missing instead of raising, so the
rest of the notebook still runs.
"""

from __future__ import annotations

import json
import os

from ..sparsity.evaluate import RESULTS_FILE, load_results

BENCHMARK_ENV = "ANEE_SPARSITY_BENCHMARK"  # another benchmark JSON to read (e.g. a --quick run)
TEXTS = {"python_docs_heldout": "docs", "kjv_heldout": "KJV"}


def load_benchmark(path=None) -> dict | None:
    """The benchmark run: ``path``, else ``$ANEE_SPARSITY_BENCHMARK``, else the shipped file.

    Prints which file it read and what the run was; prints why and returns None when there is none.
    """
    path = path or os.environ.get(BENCHMARK_ENV) or None
    where = path or f"anee_lite/data/{RESULTS_FILE} (shipped with the package)"
    try:
        results = load_results(path)
    except FileNotFoundError:
        print(f"No benchmark results at {where}: run `python benchmarks/bench_sparsity.py` (a few minutes on "
              "2 cores) to write them. The cells that read them print this line instead of a plot.")
        return None
    except json.JSONDecodeError as error:
        print(f"{where} is not valid JSON ({error}); rerun benchmarks/bench_sparsity.py.")
        return None
    reached = sum(r["reached"] for r in results["rows"])
    print(f"Read {where}: model {results['model']}, {results['tokens']} tokens per text, "
          f"{len(results['rows'])} lever settings ({reached} reach their cost point), wall time from "
          f"{results['repeats']} alternating pairs of {results['decode_tokens']} decoded tokens.")
    return results


def lever_lines(results: dict, lever: str) -> list[str]:
    """One line per reached setting of ``lever``: FLOPs, agreement and perplexity in and out of domain, speed."""
    lines = []
    for r in sorted((r for r in results["rows"] if r["lever"] == lever and r["reached"]),
                    key=lambda r: -r["flops_fraction"]):
        quality = " · ".join(f"{short} agreement {r[text]['agreement']:.3f}, perplexity {r[text]['perplexity']:.2f}"
                             for text, short in TEXTS.items())
        wall = r.get("wall_ratio")
        speed = "decode speed not measured" if wall is None else f"decode speed {1 / wall:.2f}x the full model"
        lines.append(f"{r['label']}: FLOPs {r['flops_fraction']:.3f} · {quality} · {speed}")
    return lines or [f"(no reached setting of {lever!r} in this run)"]
