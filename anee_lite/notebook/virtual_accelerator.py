"""Notebook 07 (virtual accelerator): the explorer's callback, its plots and its widgets.

The callback :func:`accelerator_view` is a plain function of the knob values, tested without a
browser; :func:`accelerator_explorer` wires it to ipywidgets (7.7 and 8).

Widget contract (the browser tests rely on it): a Dropdown described ``device``; sliders described
``energy_budget``, ``batch`` and ``context``; an HTML widget with the CSS class ``anee-sim-result``
and an Output widget with the class ``anee-sim-plot``.
"""

from __future__ import annotations

import html
import math

from ..budget import budget_exit_layer
from ..cost.constants import COMPUTE_DTYPE
from ..cost.devices import DeviceProfile
from ..cost.simulator import pass_ops, simulate_decode, time_op
from .parts import error_html, show_figure, with_class

BOUND_COLOURS = {"memory": "tab:blue", "compute": "tab:red", "overhead": "tab:gray"}


def accelerator_view(dims, profiles: dict, device: str, energy_budget: float, batch: int, context: int,
                     dtype: str = "fp16", kernels: str = "eager") -> dict:
    """What the explorer shows: one decoding step of ``dims`` on ``device`` at these knob values.

    Args:
        dims: the model's sizes.
        profiles: name -> :class:`~anee_lite.cost.devices.DeviceProfile` the dropdown offers.
        device: the chosen name.
        energy_budget: the seed's budget in [0, 1] (min_layers=2, exit_budget_threshold=0.1) -> layers run.
        batch, context: rows decoded together, keys each token attends over.
        dtype, kernels: weight dtype and dispatch model (see :func:`~anee_lite.cost.simulator.pass_ops`).

    Returns:
        ``layers``, ``result`` (the SimulationResult), ``seconds_per_token``, ``joules_per_token``,
        ``tokens_per_second`` and ``html`` (what the page prints).
    """
    if device not in profiles:
        raise ValueError(f"device must be one of {sorted(profiles)}, got {device!r}")
    layers = budget_exit_layer(dims.n_layers, energy_budget)  # the seed's min_layers and threshold
    result = simulate_decode(dims, profiles[device], layers=layers, context=context, batch=batch, dtype=dtype,
                             kernels=kernels)
    shares = result.bound_shares()
    text = (f"<b>{html.escape(device)}</b>: {layers}/{dims.n_layers} layers, batch {batch}, context {context}, "
            f"{dtype} &rarr; <b>{1e3 * result.seconds_per_token:.3f} ms/token</b> "
            f"({1 / result.seconds_per_token:,.0f} tokens/s), "
            f"<b>{1e3 * result.joules_per_token:.3f} mJ/token</b>; time {shares['memory']:.0%} memory-bound, "
            f"{shares['compute']:.0%} compute-bound, {shares['overhead']:.0%} overhead")
    return {"layers": layers, "result": result, "seconds_per_token": result.seconds_per_token,
            "joules_per_token": result.joules_per_token, "tokens_per_second": 1 / result.seconds_per_token,
            "html": text}


# --------------------------------------------------------------------------- plots


def plot_roofline(dims, profiles: dict, *, context: int = 128, batch: int = 1, dtype: str = "fp16",
                  kernels: str = "fused"):
    """One roofline per device: attainable FLOP/s against arithmetic intensity, each op of one decoding step a dot."""
    import matplotlib.pyplot as plt

    n = len(profiles)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows), squeeze=False)
    ops = [o for o in pass_ops(dims, layers_run=1, context_len=context, batch=batch, dtype=dtype, kernels=kernels)
           if o.bytes > 0 and o.flops > 0]
    for ax, (name, profile) in zip(axes.flat, profiles.items()):
        peak, bw = profile.flops_per_second(dtype), profile.bytes_per_second()
        xs = [10 ** (k / 10) for k in range(-20, 41)]  # 0.01 .. 10^4 FLOP/byte
        ax.loglog(xs, [min(peak, x * bw) for x in xs], color="black", lw=1.5, label="roofline")
        for op in ops:
            t = time_op(op, profile, dtype)
            ax.scatter(op.intensity, op.flops / t.seconds, s=22, color=BOUND_COLOURS[t.bound], zorder=3)
        ax.axvline(peak / bw, color="black", ls=":", lw=0.8)
        ax.set_title(f"{name} (ridge {peak / bw:.0f} FLOP/B)", fontsize=9)
        ax.set_xlabel("arithmetic intensity (FLOP/byte)", fontsize=8)
        ax.set_ylabel("attained FLOP/s", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"{b}-bound op") for b, c in BOUND_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"One decoding step's ops (batch {batch}, context {context}, {dtype} weights, {kernels} kernels)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def plot_exit_savings(dims, profile: DeviceProfile, *, dtype: str = "fp16", kernels: str = "fused",
                      prefill_tokens: int = 512, prefill_batch: int = 16):
    """Time against layers run, relative to full depth: batch-1 decoding vs a large compute-bound prefill."""
    import matplotlib.pyplot as plt

    from ..cost.simulator import simulate_prefill

    layers = list(range(1, dims.n_layers + 1))
    decode = [simulate_decode(dims, profile, layers=L, context=128, dtype=dtype, kernels=kernels).seconds
              for L in layers]
    prefill = [simulate_prefill(dims, profile, prompt_tokens=prefill_tokens, layers=L, batch=prefill_batch,
                                dtype=dtype, kernels=kernels).seconds for L in layers]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(layers, [t / decode[-1] for t in decode], marker="o", ms=3, label="decode, batch 1 (memory-bound)")
    ax.plot(layers, [t / prefill[-1] for t in prefill], marker="s", ms=3,
            label=f"prefill, {prefill_batch} x {prefill_tokens} tokens (compute-bound)")
    ax.plot(layers, [L / dims.n_layers for L in layers], color="gray", ls="--", lw=1, label="layers run / all layers")
    ax.set_xlabel("layers run")
    ax.set_ylabel("time / time at full depth")
    ax.set_title(f"What an early exit saves on {profile.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_energy_per_token(dims, profiles: dict, *, context: int = 128, dtype: str = "fp16", kernels: str = "fused"):
    """Energy per generated token per device: the total (log axis), and its split into arithmetic, memory
    traffic and idle power as shares of that total (linear axis; stacked bars on a log axis would misdraw them)."""
    import matplotlib.pyplot as plt

    names, parts = list(profiles), {"arithmetic": [], "memory traffic": [], "idle power x time": []}
    for name in names:
        p = profiles[name]
        r = simulate_decode(dims, p, context=context, dtype=dtype, kernels=kernels)
        flops_j = r.flops * p.joules_per_flop[COMPUTE_DTYPE[dtype]]
        bytes_j = r.bytes * p.joules_per_byte
        parts["arithmetic"].append(1e3 * flops_j)
        parts["memory traffic"].append(1e3 * bytes_j)
        parts["idle power x time"].append(1e3 * (r.joules - flops_j - bytes_j))
    totals = [sum(values) for values in zip(*parts.values())]
    fig, (ax_total, ax_share) = plt.subplots(1, 2, figsize=(11, 3.9))
    ax_total.bar(names, totals, color="0.35")
    ax_total.set_yscale("log")
    ax_total.set_ylabel("millijoules per token (log scale)")
    ax_total.set_title("Total energy per token")
    bottom = [0.0] * len(names)
    for label, values in parts.items():
        share = [v / t for v, t in zip(values, totals)]
        ax_share.bar(names, share, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, share)]
    ax_share.set_ylim(0, 1)
    ax_share.set_ylabel("share of the token's energy")
    ax_share.set_title("Where it goes")
    ax_share.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in (ax_total, ax_share):
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(f"Energy per generated token, full depth, batch 1, {dtype} ({kernels} kernels)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- widgets


def accelerator_explorer(dims, profiles: dict, device: str | None = None, energy_budget: float = 1.0,
                         batch: int = 1, context: int = 128, dtype: str = "fp16", kernels: str = "eager"):
    """A device dropdown and sliders for budget, batch and context that update time and energy per token.

    Returns:
        An ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets

    slider = {"continuous_update": False, "readout": True, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    names = list(profiles)
    device_box = widgets.Dropdown(options=names, value=device or names[0], description="device",
                                  style={"description_width": "initial"})
    energy = widgets.FloatSlider(value=energy_budget, min=0.0, max=1.0, step=0.05, description="energy_budget",
                                 readout_format=".2f", **slider)
    batch_s = widgets.IntSlider(value=batch, min=1, max=256, step=1, description="batch", **slider)
    context_s = widgets.IntSlider(value=min(context, dims.n_ctx), min=1, max=min(dims.n_ctx, 8192), step=1,
                                  description="context", **slider)
    result_html = with_class(widgets.HTML(), "anee-sim-result")
    plot = with_class(widgets.Output(), "anee-sim-plot")

    def update(_change=None):
        try:
            view = accelerator_view(dims, profiles, device_box.value, energy.value, batch_s.value, context_s.value,
                                    dtype, kernels)
        except ValueError as exc:
            result_html.value = error_html(exc)
            return
        result_html.value = view["html"]
        show_figure(plot, _breakdown_figure(view["result"]))

    for control in (device_box, energy, batch_s, context_s):
        control.observe(update, names="value")
    update()
    return widgets.VBox([device_box, energy, batch_s, context_s, result_html, plot])


def _breakdown_figure(result):
    """Seconds per op (summed over layers), coloured by what bounds it."""
    import matplotlib.pyplot as plt

    ops = sorted(result.ops, key=lambda o: o.seconds, reverse=True)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.barh([o.name for o in ops], [1e3 * o.seconds / result.batch for o in ops],
            color=[BOUND_COLOURS[o.bound] for o in ops])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per token")
    ax.set_title(f"{result.device}: where one token's time goes (colour = bound)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=b) for b, c in BOUND_COLOURS.items()]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig
