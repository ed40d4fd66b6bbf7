"""The README's account of where early exit loses agreement quotes the shipped propagation benchmark."""

import json
import re
from pathlib import Path

from anee_lite.io.assets import DATA_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quotes_the_shipped_propagation_counts():
    bench = json.loads((DATA_DIR / "smollm2-135m_propagation_bench.json").read_text())
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    at_90 = bench["groups"][str(bench["calibrated_thresholds"]["0.9"])]
    ex, after, clean = at_90["exited"], at_90["full_depth_after_exit"], at_90["full_depth_clean"]

    def share(g):
        return f"{g['agreements'] / g['tokens']:.3f}"

    assert (f"the {ex['tokens']:,} tokens that exited agree {share(ex)} ({ex['tokens'] - ex['agreements']} wrong), "
            f"and the {after['tokens']:,} tokens that ran every layer") in readme
    assert f"agree {share(after)} ({after['tokens'] - after['agreements']} wrong)" in readme
    assert f"no exit before it agrees {share(clean)}" in readme and clean["agreements"] == clean["tokens"]
    at_95 = bench["groups"]["0.95"]
    wrong = {k: g["tokens"] - g["agreements"] for k, g in at_95.items()}
    overall = sum(g["agreements"] for g in at_95.values()) / bench["tokens"]
    assert (f"At threshold 0.95 only {at_95['exited']['tokens']} tokens exit, yet agreement falls to {overall:.3f}, "
            f"and {wrong['full_depth_after_exit'] + wrong['full_depth_clean']} of its {sum(wrong.values())} "
            "disagreements are on full-depth tokens") in readme
    assert f"the same {bench['tokens']:,} held-out tokens" in readme


def test_notebook_05_quotes_the_shipped_propagation_counts():
    bench = json.loads((DATA_DIR / "smollm2-135m_propagation_bench.json").read_text())
    at_90 = bench["groups"][str(bench["calibrated_thresholds"]["0.9"])]
    wrong = {k: g["tokens"] - g["agreements"] for k, g in at_90.items()}
    cells = json.loads((ROOT / "notebooks" / "05_adaptive_exit.ipynb").read_text())["cells"]
    prose = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert f"{wrong['full_depth_after_exit']} of the {sum(wrong.values())} disagreements" in prose


def test_notebook_05_quotes_the_shipped_catch_up_benchmark():
    """Section 7's reading and the summary quote the two shipped runs of bench_adaptive (propagate, catch_up)."""
    from anee_lite.notebook.adaptive_exit import load_benchmark

    cells = json.loads((ROOT / "notebooks" / "05_adaptive_exit.ipynb").read_text())["cells"]
    prose = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    caught = load_benchmark(kv_fill="catch_up")["controllers"]["learned"]["targets"]
    old = load_benchmark()["controllers"]["learned"]["targets"]

    def f(x):
        return f"{x:.3f}"

    c8, c9 = caught["0.8"], caught["0.9"]
    assert f"catch-up delivers **{f(c8['in domain']['agreement'])}** on held-out Python docs" in prose
    assert f"calibrated for 0.90, **{f(c9['in domain']['agreement'])}**" in prose
    assert f"out of domain too ({f(c8['out of domain']['agreement'])} and {f(c9['out of domain']['agreement'])})" in prose
    assert (f"the bytes moved fall to {f(c8['in domain']['bytes_fraction'])} and {f(c9['in domain']['bytes_fraction'])}"
            in prose)
    assert (f"({f(c8['in domain']['cost_fraction'])} and {f(c9['in domain']['cost_fraction'])}: the skipped layers"
            in prose)
    walls = f"{c8['wall_time_ratio_in_domain']:.2f} and {c9['wall_time_ratio_in_domain']:.2f}"
    assert f"the wall time is {walls} of the full model's" in prose
    assert (f"kept ({f(c8['in domain']['agreement'])} and {f(c9['in domain']['agreement'])})" in prose
            and f"still about the full model's ({walls})" in prose)  # the summary
    assert f"({f(old['0.8']['in domain']['agreement'])} and {f(old['0.9']['in domain']['agreement'])} delivered" in prose
    five = load_benchmark(kv_fill="catch_up")["controllers"]["learned@11,15,19,23,27"]["targets"]
    assert (f"calibrated for 0.80 it delivers {f(five['0.8']['in domain']['agreement'])} at "
            f"{five['0.8']['wall_time_ratio_in_domain']:.2f} of the full model's time") in prose
    assert (f"for 0.90, {f(five['0.9']['in domain']['agreement'])} at {five['0.9']['wall_time_ratio_in_domain']:.2f}"
            in prose)


def test_readme_quotes_the_shipped_rows_benchmark():
    """What an extra row costs in the products (why catch-up is not free on this CPU) comes from its JSON."""
    bench = json.loads((DATA_DIR / "smollm2-135m_rows_bench.json").read_text())
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    one, two = bench["seconds"]["1"], bench["seconds"]["2"]
    assert (f"one row through every layer's four products takes {1000 * one:.1f} ms, of two rows {1000 * two:.1f} ms, "
            f"so an extra row costs {two / one - 1:.2f} of the first") in readme
    assert bench["load_before"][0] <= 1.0
