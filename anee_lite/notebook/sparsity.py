"""Notebook 06 (sparsity): its plots, its window on the shipped benchmark, and its explorer.

``benchmarks/bench_sparsity.py`` writes ``anee_lite/data/sparsity_benchmark.json``; the notebook, the README
and :func:`load_benchmark` read the same rows (it says clearly when the file is missing instead of raising,
so the rest of the notebook still runs).

:func:`sparsity_view` is the explorer's callback, a plain function of the model and the knob values (tested
by pytest); :func:`sparsity_explorer` wires it to ipywidgets (7.7 and 8).

Widget contract (browser_tests/test_sparsity_widgets.py relies on it): one ToggleButton per head with the
CSS class ``anee-head-L-H`` (pressed = the head runs); sliders described ``layers_skipped`` and
``activation_sparsity``; HTML widgets with the classes ``anee-sparsity-stats`` (perplexity and cost) and
``anee-sparsity-text`` (the generated text)."""

from __future__ import annotations

import html
import json
import os

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ..core.metrics import perplexity
from ..sparsity.evaluate import RESULTS_FILE, load_results, mask_cost
from ..sparsity.select import layers_to_skip
from .parts import error_html, prompt_text, require_keys, text_html, with_class

MARKERS = {"static exit": "o", "layer skipping": "s", "head pruning": "^", "neuron pruning": "v",
           "activation sparsity": "D", "combination": "*"}


TEXT_NAMES = {"python_docs_heldout": "in domain: Python docs", "kjv_heldout": "out of domain: King James Bible"}


def _vector(name: str, values) -> Tensor:
    if not isinstance(values, Tensor) or values.dim() != 1 or values.numel() == 0:
        raise TypeError(f"{name} must be a non-empty 1-d tensor, got "
                        f"{type(values).__name__}{list(values.shape) if isinstance(values, Tensor) else ''}")
    return values.detach().float().cpu()


def plot_block_influence(influence: Tensor, skipped=(), ax=None):
    """Block Influence per layer as bars; the layers in ``skipped`` drawn in another colour."""
    influence = _vector("influence", influence)
    skipped = set(skipped)
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    colours = ["tab:red" if layer in skipped else "tab:blue" for layer in range(influence.numel())]
    ax.bar(range(influence.numel()), influence.tolist(), color=colours)
    ax.set_yscale("log")
    ax.set(xlabel="layer", ylabel="Block Influence\n1 - mean cos(in, out)",
           title="How much each block turns the residual stream" + (" (red: skipped first)" if skipped else ""))
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_quality_curves(curves: dict, xlabel: str, title: str = "", ax=None):
    """Top-1 agreement with the full model against a knob, one line per way of choosing what goes.

    Args:
        curves: label -> list of (knob value, agreement) pairs.
        xlabel: what the knob is.
    """
    if not isinstance(curves, dict) or not curves or not all(
            isinstance(c, list) and c and all(isinstance(p, tuple) and len(p) == 2 for p in c) for c in curves.values()):
        raise TypeError("curves must be a non-empty dict of label -> non-empty list of (x, agreement) pairs")
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, points in curves.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="90% agreement")
    ax.set(xlabel=xlabel, ylabel="top-1 agreement\nwith the full model", title=title, ylim=(0, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_head_importance(scores: Tensor, n_kv_heads: int, mask: Tensor | None = None, ax=None):
    """Layer x head grid of head importance; white lines between key/value groups, x on the heads ``mask`` removes."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise TypeError(f"scores must be a [n_layers, n_heads] tensor, got {type(scores).__name__}")
    n_layers, n_heads = scores.shape
    if mask is not None and tuple(mask.shape) != (n_layers, n_heads):
        raise ValueError(f"mask must have the shape of scores {[n_layers, n_heads]}, got {list(mask.shape)}")
    ax = ax or plt.subplots(figsize=(4.5, 7))[1]
    image = ax.imshow(scores.detach().float().cpu().numpy(), aspect="auto", cmap="viridis")
    group = n_heads // n_kv_heads
    for g in range(1, n_kv_heads):
        ax.axvline(g * group - 0.5, color="white", lw=2)
    if mask is not None:
        layers, heads = (mask == 0).nonzero(as_tuple=True)
        ax.plot(heads.tolist(), layers.tolist(), "x", color="red", markersize=5, label="removed")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel=f"query head ({n_kv_heads} key/value groups of {group})", ylabel="layer",
           title="Head importance (Michel et al.)", xticks=range(n_heads))
    plt.colorbar(image, ax=ax, fraction=0.05, label="normalised |dL/d gate|")
    return ax


def plot_activation_magnitudes(values: Tensor, thresholds: dict, title: str = "", ax=None):
    """Histogram of |activation| with a vertical line per labelled threshold (e.g. the 50% one)."""
    values = _vector("values", values.flatten() if isinstance(values, Tensor) else values)
    if not isinstance(thresholds, dict):
        raise TypeError(f"thresholds must be a dict label -> magnitude, got {type(thresholds).__name__}")
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    magnitude = values.abs().clamp(min=1e-6)
    bins = torch.logspace(-4, float(magnitude.max().log10()) + 0.05, 60)
    ax.hist(magnitude.numpy(), bins=bins.numpy(), color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    for (label, value), colour in zip(thresholds.items(), ["tab:orange", "tab:red", "tab:purple", "tab:green"]):
        ax.axvline(float(value), color=colour, lw=1.5, label=label)
    ax.set(xlabel="|activation| (log scale)", ylabel="entries", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_sparsity_pareto(results: dict, text: str = "python_docs_heldout", ax=None):
    """Top-1 agreement against FLOPs fraction, one marker per lever, one point per reached cost point."""
    require_keys("results", results, ["rows"])
    if text not in TEXT_NAMES:
        raise ValueError(f"text must be one of {list(TEXT_NAMES)}, got {text!r}")
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    for lever, marker in MARKERS.items():
        rows = sorted((r for r in results["rows"] if r["lever"] == lever and r["reached"]),
                      key=lambda r: r["flops_fraction"])
        if rows:
            ax.plot([r["flops_fraction"] for r in rows], [r[text]["agreement"] for r in rows], marker=marker,
                    markersize=9 if marker == "*" else 6, label=lever)
    ax.plot([1.0], [1.0], marker="P", color="black", ls="", label="full model")
    ax.set(xlabel="FLOPs per decoding token (fraction of the full model)", ylabel="top-1 agreement with full model",
           title=f"Which lever keeps the most at equal cost\n({TEXT_NAMES[text]})", ylim=(0, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax


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


DEFAULT_PROMPT = "def fibonacci(n):"


def activation_spec(model, fraction: float):
    """What the explorer passes as ``activation_sparsity``: one object for the text and the perplexity alike.

    The wrapper's calibrated thresholds (TEAL: ``model.activation_thresholds(fraction)``, shipped for
    smollm2-135m, calibrated on first use for other models); None at 0.
    """
    return None if fraction <= 0 else model.activation_thresholds(fraction)


def sparsity_view(model, prompt: str, head_mask: Tensor, layers_skipped: int, activation_sparsity: float,
                  influence: Tensor, eval_ids: Tensor, max_new_tokens: int = 12,
                  full_perplexity: float | None = None) -> dict:
    """What the explorer shows for these knobs.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: text to continue.
        head_mask: [n_layers, n_heads] 0/1, the head grid's state.
        layers_skipped: how many layers of lowest Block Influence to skip.
        activation_sparsity: share of the activations entering the linear maps that is zeroed, in [0, 1);
            one spec (:func:`activation_spec`) serves the generated text and the perplexity.
        influence: [n_layers] Block Influence (which layers go first).
        eval_ids: [1, T] held-out tokens for the perplexity.
        max_new_tokens: tokens to generate.
        full_perplexity: the unpruned model's perplexity on ``eval_ids``, if known (it does not depend
            on the knobs: the explorer computes it once, not at every click).

    Returns:
        ``skip_layers``, ``activation`` (the spec passed as ``activation_sparsity``), ``text`` (exactly
        ``model.generate`` with these masks), ``perplexity`` (the forward with the same masks),
        ``full_perplexity``, ``flops_fraction``, ``bytes_fraction`` (what a model pruned to these masks
        runs per decoding token), ``heads_off`` and the two HTML strings.
    """
    dims = model.model.dims
    skip = layers_to_skip(influence, layers_skipped)
    activation = activation_spec(model, activation_sparsity)
    masks = {"skip_layers": skip, "head_mask": head_mask.float(), "activation_sparsity": activation}
    text = model.generate(prompt=prompt, max_new_tokens=max_new_tokens, masks=masks)
    ppl = perplexity(model.model(eval_ids, **masks).logits, eval_ids)
    full_ppl = full_perplexity if full_perplexity is not None else perplexity(model.model(eval_ids).logits, eval_ids)
    fraction = mask_cost(dims, context_len=eval_ids.shape[1], skip_layers=skip, head_mask=head_mask,
                         activation_sparsity=activation_sparsity)
    heads_off = int((head_mask[[l for l in range(dims.n_layers) if l not in skip]] == 0).sum())
    stats = (f"<b>perplexity {ppl:.2f}</b> (full model {full_ppl:.2f}) · "
             f"<b>FLOPs {fraction['flops_fraction']:.3f}</b> · bytes {fraction['bytes_fraction']:.3f} "
             f"of the full model per token · skipped layers {skip or 'none'} · {heads_off} heads off · "
             f"activation sparsity {_describe(activation)}")
    return {"skip_layers": skip, "activation": activation, "text": text, "perplexity": ppl, "full_perplexity": full_ppl, **fraction,
            "heads_off": heads_off, "stats_html": stats, "text_html": text_html(text)}


def _describe(activation) -> str:
    return "off" if activation is None else f"{activation.fraction:.1f} (calibrated thresholds)"


def sparsity_explorer(model, influence: Tensor, eval_ids: Tensor, prompt: str = DEFAULT_PROMPT,
                      max_new_tokens: int = 12):
    """The head grid, two sliders, the text and the stats; every change recomputes :func:`sparsity_view`.

    Returns:
        An ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets

    dims = model.model.dims
    slider = {"continuous_update": False, "readout": True, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    skipped = widgets.IntSlider(value=0, min=0, max=dims.n_layers - 1, step=1, description="layers_skipped",
                                **slider)
    act = widgets.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.1, description="activation_sparsity",
                              readout_format=".1f", **slider)
    prompt_box = prompt_text(widgets, prompt)
    # All buttons share one layout and one style (the first button's), the row labels one layout: a notebook
    # that stores its widget state then stores a few models for them, not two per button.
    button_layout, label_layout = widgets.Layout(width="30px", height="22px", padding="0"), widgets.Layout(width="36px")
    shared = {}

    def head_button(layer: int, head: int):
        button = widgets.ToggleButton(value=True, description=str(head), tooltip=f"layer {layer}, head {head}",
                                      layout=button_layout, **shared)
        shared.setdefault("style", button.style)
        return with_class(button, f"anee-head-{layer}-{head}")

    buttons = [[head_button(l, h) for h in range(dims.n_heads)] for l in range(dims.n_layers)]
    rows = [widgets.HBox([widgets.HTML(f"<code>L{l:02d}</code>", layout=label_layout)] + row)
            for l, row in enumerate(buttons)]
    half = (dims.n_layers + 1) // 2  # two columns of layers keep the grid on one screen
    grid = widgets.HBox([widgets.VBox(rows[:half]), widgets.VBox(rows[half:])])
    stats = with_class(widgets.HTML(), "anee-sparsity-stats")
    text = with_class(widgets.HTML(), "anee-sparsity-text")
    known = {}  # the unpruned model's perplexity does not depend on the knobs: computed by the first update only

    def head_mask() -> Tensor:
        return torch.tensor([[1.0 if b.value else 0.0 for b in row] for row in buttons])

    def update(_change=None):
        try:
            view = sparsity_view(model, prompt_box.value, head_mask(), skipped.value, act.value, influence,
                                 eval_ids, max_new_tokens, known.get("full_perplexity"))
        except ValueError as exc:
            stats.value = error_html(exc)
            return
        known["full_perplexity"] = view["full_perplexity"]
        stats.value = view["stats_html"]
        text.value = view["text_html"]

    for control in [skipped, act, prompt_box] + [b for row in buttons for b in row]:
        control.observe(update, names="value")
    update()
    help_text = widgets.HTML("Click a head to switch it off (pressed = running). "
                             f"<code>{html.escape(model.model.dims.architecture)}</code>: "
                             f"{dims.n_layers} layers x {dims.n_heads} heads.")
    return widgets.VBox([prompt_box, skipped, act, help_text, grid, stats, text])
