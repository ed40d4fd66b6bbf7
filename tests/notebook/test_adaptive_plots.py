"""Notebook 05's plots: nothing drawn falls outside the axes, and the calibration chart shows cost."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from anee_lite.adaptive.calibration import CurvePoint
from anee_lite.notebook import adaptive_exit as adaptive_plots


def point(cost, agreement):
    return CurvePoint(threshold=0.5, agreement=agreement, cost_fraction=cost, mean_layers_fraction=cost)


def test_pareto_keeps_dear_points_inside_and_labels_every_curve():
    curves = {"cheap": [point(0.3, 0.4), point(0.8, 0.9)], "dear": [point(1.9, 0.95), point(2.3, 1.0)]}
    ax = adaptive_plots.plot_pareto(curves, title="t")
    assert ax.get_xlim()[1] >= 2.3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"cheap", "dear"} <= set(labels)
    plt.close("all")


def test_calibration_chart_shows_cost_beside_agreement():
    rows = [{"label": "learned", "calibration": 0.9, "in_domain": 0.75, "in_domain_cost": 0.91,
             "out_of_domain": 0.8, "out_of_domain_cost": 0.94}]
    agree, cost = adaptive_plots.plot_calibration(rows, 0.8)
    heights = sorted(round(b.get_height(), 2) for b in cost.patches if b.get_height() == b.get_height())
    assert 0.91 in heights and 0.94 in heights
    assert sorted(round(b.get_height(), 2) for b in agree.patches) == [0.75, 0.8, 0.9]
    plt.close("all")


def fake_benchmark():
    """A benchmark result shaped like benchmarks/bench_adaptive.py's, with numbers that are easy to follow."""
    curve = [{"threshold": t, "agreements": a, "tokens": 200, "cost_fraction": c, "mean_layers_fraction": c - 0.01}
             for t, a, c in ((0.99, 198, 0.95), (0.9, 180, 0.7))]
    side = {"agreement": 0.885, "cost_fraction": 0.71, "mean_layers_fraction": 0.7, "tokens": 200}
    target = {"threshold": 0.9, "met": True, "wall_time_ratio_in_domain": 0.74,
              "calibration": {"agreement": 0.9, "lower_bound": 0.871, "tokens": 200},
              "in domain": side, "out of domain": side | {"agreement": 0.8}}
    return {"controllers": {"learned": {"curves": {"calibration": curve, "in domain": curve, "out of domain": curve},
                                        "targets": {"0.8": target, "0.9": target | {"met": False}}}}}


def test_benchmark_curves_turn_counts_into_agreements(tmp_path):
    import json

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(fake_benchmark()))
    curves = adaptive_plots.benchmark_curves(adaptive_plots.load_benchmark(path), "out of domain")
    assert [(p.threshold, p.agreement, p.cost_fraction) for p in curves["learned"]] == [(0.99, 0.99, 0.95), (0.9, 0.9, 0.7)]
    import pytest

    with pytest.raises(ValueError, match="text must be one of"):
        adaptive_plots.benchmark_curves(fake_benchmark(), "heldout")


def test_benchmark_table_shows_each_target_with_its_bound_and_wall_time():
    lines = adaptive_plots.benchmark_table(fake_benchmark()).splitlines()
    assert len(lines) == 4  # header, rule, one row per target
    assert lines[2] == "| `learned` | 0.80 | 0.9 | 0.900 (0.871) | 0.885 / 0.710 | 0.800 / 0.710 | 0.74 |"
    assert "(not met)" in lines[3] and "(not met)" not in lines[2]


def test_shipped_adaptive_benchmark_matches_the_readme():
    from pathlib import Path

    table = adaptive_plots.benchmark_table(adaptive_plots.load_benchmark())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table in readme  # regenerate the README's table from the JSON after a new run


def test_benchmark_table_adds_bytes_when_the_run_recorded_them():
    bench = fake_benchmark()
    for r in bench["controllers"]["learned"]["targets"].values():
        r["in domain"] = r["in domain"] | {"bytes_fraction": 0.812}
    lines = adaptive_plots.benchmark_table(bench).splitlines()
    assert "agreement / cost / bytes |" in lines[0]
    assert "| 0.885 / 0.710 / 0.812 |" in lines[2]


def test_benchmark_table_adds_the_speed_check_when_the_run_made_one():
    bench = fake_benchmark()
    targets = bench["controllers"]["learned"]["targets"]
    targets["0.8"] = targets["0.8"] | {"speed_check": {"time_ratio": 0.96, "switched_off": False}}
    targets["0.9"] = targets["0.9"] | {"speed_check": {"time_ratio": 1.052, "switched_off": True},
                                       "switched_off_wall_time_ratio_in_domain": 1.004}
    lines = adaptive_plots.benchmark_table(bench).splitlines()
    assert lines[0].endswith("| speed check (calibration text): time vs full, then |") and lines[1].count("|") == 9
    assert lines[2].endswith("| 0.74 | 0.96: kept |")
    assert lines[3].endswith("| 1.05: switched off (wall 1.00) |")
    assert "speed check" not in adaptive_plots.benchmark_table(fake_benchmark())  # runs without one: as before


def test_kv_fill_plot_draws_one_line_per_fill_and_stars_the_calibrated_points():
    slow, fast = fake_benchmark(), fake_benchmark()
    ax = adaptive_plots.plot_kv_fill({"propagate": slow, "catch_up": fast})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["propagate", "catch_up"]
    stars = [l for l in ax.get_lines() if l.get_marker() == "*"]
    assert len(stars) == 4 and {tuple(s.get_xydata()[0]) for s in stars} == {(0.7, 0.885)}
    assert "layers each token ran" in ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")
    import pytest

    with pytest.raises(ValueError, match="controller 'static' is not in"):
        adaptive_plots.plot_kv_fill({"propagate": slow}, controller="static")
    with pytest.raises(TypeError, match="benches must be"):
        adaptive_plots.plot_kv_fill({})
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        adaptive_plots.load_benchmark(kv_fill="eager")


def test_shipped_catch_up_benchmark_matches_the_readme():
    """The README's catch-up table and its comparison with propagation come from the two shipped runs."""
    import re
    from pathlib import Path

    caught = adaptive_plots.load_benchmark(kv_fill="catch_up")
    propagated = adaptive_plots.load_benchmark()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert adaptive_plots.benchmark_table(caught) in readme
    assert caught["args"]["kv_fill"] == "catch_up" and caught["load_before"][0] <= 1.0
    old = propagated["controllers"]["learned"]["targets"]["0.8"]
    at_old = next(p for p in caught["controllers"]["learned"]["curves"]["in domain"]
                  if abs(p["threshold"] - old["threshold"]) < 1e-6)  # both grids hold it (to float rounding)
    flat = re.sub(r"\s+", " ", readme)
    assert (f"At the threshold propagation calibrated for 0.80 ({old['threshold']:.4f}), catch-up agrees "
            f"{at_old['agreements'] / at_old['tokens']:.3f} on the held-out Python docs against "
            f"{old['in domain']['agreement']:.3f}") in flat
    new = caught["controllers"]["learned"]["targets"]["0.8"]["in domain"]
    assert f"tokens run {new['mean_layers_fraction']:.3f} of the layers" in flat
    five = caught["controllers"]["learned@11,15,19,23,27"]["targets"]
    assert (f"Calibrated for 0.80 it delivers {five['0.8']['in domain']['agreement']:.3f} in domain at "
            f"{five['0.8']['wall_time_ratio_in_domain']:.2f} of the full model's wall time") in flat
    assert (f"For 0.90 it delivers {five['0.9']['in domain']['agreement']:.3f} at "
            f"{five['0.9']['wall_time_ratio_in_domain']:.2f}") in flat
    oracle = caught["controllers"]["learned@11,15,19,23,27"]["oracle"]["in domain"]["0.9"]
    assert f"costs {oracle:.3f} for agreement 0.9, against {propagated['controllers']['learned']['oracle']['in domain']['0.9']:.3f}" in flat
