"""Notebook 05 (adaptive exit): Pareto fronts, the lens per layer, where each token exits, calibration."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .parts import check_exit_list, require_keys, require_same_length


def plot_pareto(curves: dict, marks: dict | None = None, title: str = "", ax=None):
    """Agreement against cost fraction, one line per controller (its Pareto front).

    The x axis reaches the dearest point drawn (controllers whose checks cost more than they save lie
    right of 1.0) and the legend sits outside the axes, so no point is clipped or hidden.

    Args:
        curves: label -> list of :class:`~anee_lite.adaptive.calibration.CurvePoint`.
        marks: label -> (cost_fraction, agreement) points to mark (e.g. calibrated thresholds).
    """
    from ..adaptive.calibration import pareto_front

    if not isinstance(curves, dict) or not curves or not all(
            isinstance(c, list) and c and all(hasattr(p, "cost_fraction") and hasattr(p, "agreement") for p in c)
            for c in curves.values()):
        raise TypeError("curves must be a non-empty dict of label -> non-empty list of CurvePoint (what sweep returns)")
    ax = ax or plt.subplots(figsize=(9, 4.5))[1]
    right = 1.0
    for label, curve in curves.items():
        front = pareto_front(curve)
        xs = [p.cost_fraction for p in front]
        right = max([right, *xs])
        line, = ax.plot(xs, [p.agreement for p in front], marker=".", label=label)
        if marks and label in marks:
            ax.plot(*marks[label], marker="*", markersize=14, color=line.get_color())
            right = max(right, marks[label][0])
    ax.axvline(1.0, color="grey", lw=0.8, ls="--", label="cost of the full model")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="90% agreement")
    ax.set(xlabel="cost, as a fraction of the full model (every check and K/V entry charged)",
           ylabel="share of tokens whose top-1\nmatches the full model", title=title,
           xlim=(0, 1.05 * right), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


def plot_lens_per_layer(logit: dict, tuned: dict, axes=None):
    """Two panels: top-1 agreement and KL to the final distribution, per layer, for two lenses.

    Args:
        logit, tuned: outputs of :func:`~anee_lite.tuned_lens.lens_quality`.
    """
    for name, stats in (("logit", logit), ("tuned", tuned)):
        require_keys(name, stats, ("layers", "agreement", "kl"))
        require_same_length(layers=stats["layers"], agreement=stats["agreement"], kl=stats["kl"])
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(10, 3.5))[1]
    for stats, label in ((logit, "logit lens"), (tuned, "tuned lens")):
        axes[0].plot(stats["layers"], stats["agreement"], marker="o", label=label)
        axes[1].plot(stats["layers"], stats["kl"], marker="o", label=label)
    axes[0].set(xlabel="layers run", ylabel="top-1 agreement with the output", ylim=(0, 1))
    axes[1].set(xlabel="layers run", ylabel="KL(final || lens), nats", yscale="log")
    axes[0].legend()
    return axes


def plot_exit_heatmap(tokens: list[str], exits: list[int], n_layers: int, allowed: list[int], ax=None):
    """Token x layer grid: a cell is dark where the token ran that layer; ticks mark allowed exits."""
    import numpy as np

    exits = check_exit_list(exits, n_layers, tokens)
    grid = np.array([[1.0 if layer < e else 0.0 for layer in range(n_layers)] for e in exits])  # [T, L]
    ax = ax or plt.subplots(figsize=(min(16, 0.28 * len(tokens) + 2), 4))[1]
    ax.imshow(grid.T, aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1.3)
    ax.set_xticks(range(len(tokens)), [t.replace("\n", "\\n") for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks([l - 0.5 for l in allowed], [str(l) for l in allowed], fontsize=7)
    ax.set(ylabel="layers run (ticks: allowed exits)", title="Layers each token ran")
    return ax


def plot_calibration(rows: list[dict], target: float, axes=None):
    """Two panels per controller: agreement reached, and the cost paid for it, on each text.

    Args:
        rows: dicts with ``label`` and, per text key in ``calibration``, ``in_domain``, ``out_of_domain``,
            the agreement (a float) and optionally the cost fraction under ``<key>_cost``.
        target: the agreement the thresholds were calibrated for (a dashed line).
    """
    import numpy as np

    names = {"calibration": "calibration text", "in_domain": "held-out text, same kind",
             "out_of_domain": "held-out text, another kind"}
    keys = [k for k in names if any(k in r for r in rows)]
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(11, 3.8))[1]
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(keys))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, key in enumerate(keys):
        offset = (i - (len(keys) - 1) / 2) * width
        style = {"width": width, "color": colors[i % len(colors)]}
        axes[0].bar(x + offset, [r.get(key, np.nan) for r in rows], label=names[key], **style)
        costs = [r.get(f"{key}_cost", np.nan) for r in rows]
        if not np.isnan(costs).all():  # not all NaN: a text with no cost measured gets no legend entry
            axes[1].bar(x + offset, costs, label=names[key], **style)
    axes[0].axhline(target, color="k", lw=1, ls="--", label=f"target agreement {target}")
    axes[1].axhline(1.0, color="k", lw=1, ls="--", label="cost of the full model")
    for ax in axes:
        ax.set_xticks(x, [r["label"] for r in rows], rotation=20)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)  # below: hides no bar
    axes[0].set(ylabel="share of tokens whose top-1\nmatches the full model", ylim=(0, 1.05),
                title="Agreement reached")
    axes[1].set(ylabel="cost, fraction of the full model", title="Cost paid for it")
    return axes


BENCHMARK_FILE = "smollm2-135m_adaptive_bench.json"
BENCHMARK_FILES = {"propagate": BENCHMARK_FILE, "catch_up": "smollm2-135m_adaptive_catch_up_bench.json"}  # per kv_fill
TEXT_LABELS = {"calibration": "calibration Python docs", "in domain": "held-out Python docs",
               "out of domain": "held-out KJV"}


def load_benchmark(path=None, kv_fill: str = "propagate") -> dict:
    """The result of ``benchmarks/bench_adaptive.py`` shipped for smollm2-135m (or the one at ``path``).

    ``kv_fill``: which shipped run, ``"propagate"`` or ``"catch_up"`` (``--kv-fill``); ignored with ``path``.
    """
    import json
    from pathlib import Path

    from ..io.assets import DATA_DIR

    if kv_fill not in BENCHMARK_FILES:
        raise ValueError(f"kv_fill must be one of {list(BENCHMARK_FILES)}, got {kv_fill!r}")
    return json.loads(Path(path or DATA_DIR / BENCHMARK_FILES[kv_fill]).read_text())


def benchmark_curves(bench: dict, text: str = "in domain") -> dict:
    """Per controller, its real-decoding curve on one text as :class:`~anee_lite.adaptive.calibration.CurvePoint` s.

    Args:
        bench: :func:`load_benchmark`'s result.
        text: "calibration", "in domain" or "out of domain".
    """
    from ..adaptive.calibration import CurvePoint

    if text not in TEXT_LABELS:
        raise ValueError(f"text must be one of {list(TEXT_LABELS)}, got {text!r}")
    return {name: [CurvePoint(p["threshold"], p["agreements"] / p["tokens"], p["cost_fraction"],
                              p["mean_layers_fraction"]) for p in row["curves"][text]]
            for name, row in bench["controllers"].items()}


def benchmark_table(bench: dict) -> str:
    """The calibrated thresholds of the benchmark as a Markdown table: the rows the README quotes."""
    targets = [r for row in bench["controllers"].values() for r in row["targets"].values()]
    with_bytes = all("bytes_fraction" in r["in domain"] for r in targets)  # runs before 2026-12-04 did not record it
    with_speed = any(r.get("speed_check") for r in targets)  # runs before 2026-12-05 did not check it
    header = ("| controller | target | threshold | calibration: agreement (bound) | held-out Python docs: agreement / "
              "cost" + (" / bytes" if with_bytes else "") + " | held-out KJV: agreement / cost | wall time vs full |"
              + (" speed check (calibration text): time vs full, then |" if with_speed else ""))
    lines = [header, "|---|---|---|---|---|---|---|" + ("---|" if with_speed else "")]
    for name, row in bench["controllers"].items():
        for target, r in row["targets"].items():
            c, i, o = r["calibration"], r["in domain"], r["out of domain"]
            wall = r.get("wall_time_ratio_in_domain")
            thr = f"{r['threshold']:.4g}" + ("" if r["met"] else " (not met)")
            moved = f" / {i['bytes_fraction']:.3f}" if with_bytes else ""
            lines.append(f"| `{name}` | {float(target):.2f} | {thr} | {c['agreement']:.3f} ({c['lower_bound']:.3f}) | "
                         f"{i['agreement']:.3f} / {i['cost_fraction']:.3f}{moved} | {o['agreement']:.3f} / "
                         f"{o['cost_fraction']:.3f} | {'-' if wall is None else f'{wall:.2f}'} |"
                         + (f" {_speed_check_cell(r)} |" if with_speed else ""))
    return "\n".join(lines)


def _speed_check_cell(r: dict) -> str:
    """What the speed check measured for one calibrated threshold, and what decoding then does."""
    speed = r.get("speed_check")
    if not speed:
        return "-"
    if not speed["switched_off"]:
        return f"{speed['time_ratio']:.2f}: kept"
    off = r.get("switched_off_wall_time_ratio_in_domain")
    return f"{speed['time_ratio']:.2f}: switched off" + ("" if off is None else f" (wall {off:.2f})")


def plot_kv_fill(benches: dict, controller: str = "learned", text: str = "in domain", ax=None):
    """Agreement against the layers each token ran, one line per way of filling exited tokens' keys/values.

    The x axis is what a batch-1 decoding step reads (its token's layers), not FLOPs: under catch-up the
    skipped layers still run, beside a later token, so FLOPs do not fall while the weights read do.
    Stars mark the thresholds calibrated for each target.

    Args:
        benches: label (e.g. the ``kv_fill``) -> :func:`load_benchmark`'s result.
        controller: whose curve to draw (it must be in every benchmark).
        text: "calibration", "in domain" or "out of domain".
    """
    if not isinstance(benches, dict) or not benches:
        raise TypeError("benches must be a non-empty dict of label -> load_benchmark() result")
    missing = [label for label, b in benches.items() if controller not in b.get("controllers", {})]
    if missing:
        raise ValueError(f"controller {controller!r} is not in the benchmark(s) {missing}")
    ax = ax or plt.subplots(figsize=(9, 4.5))[1]
    for label, bench in benches.items():
        curve = sorted(benchmark_curves(bench, text)[controller], key=lambda p: p.mean_layers_fraction)
        line, = ax.plot([p.mean_layers_fraction for p in curve], [p.agreement for p in curve], marker=".",
                        label=label)
        for target, r in bench["controllers"][controller]["targets"].items():
            if text in r:  # the calibrated thresholds' results on the held-out texts
                ax.plot(r[text]["mean_layers_fraction"], r[text]["agreement"], marker="*", markersize=14,
                        color=line.get_color())
                ax.annotate(f"target {float(target):.1f}", (r[text]["mean_layers_fraction"], r[text]["agreement"]),
                            textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set(xlabel="layers each token ran, as a fraction of all (what a decoding step reads)",
           ylabel="share of tokens whose top-1\nmatches the full model", title=f"{controller}, {TEXT_LABELS[text]}")
    ax.legend(fontsize=8, loc="upper left")
    return ax
