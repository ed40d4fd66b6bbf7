"""Notebook 08 (self-speculative decoding): the draft/verify slider callback and widget, the acceptance plot,
the shipped benchmark.

Widget contract (for browser tests): sliders described ``draft_layers`` and ``draft_tokens``, a
Dropdown described ``draft_lens``, an HTML widget with the CSS class ``anee-speculative``.
"""

from __future__ import annotations

import html
import time

import torch

from ..decoding.speculative import expected_speedup

DEFAULT_PROMPT = "def fibonacci(n):\n    "


def speculative_view(model, prompt: str, draft_layers: int, draft_tokens: int, draft_lens: str = "logit",
                     max_new_tokens: int = 24) -> dict:
    """Generate full-depth and speculatively, back to back, and compare speed with the formula's prediction.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` with a tokenizer.
        prompt: text to continue.
        draft_layers, draft_tokens, draft_lens: the speculative knobs (see ``ANEEWrapper.generate``).
        max_new_tokens: tokens to generate (>= 2).

    Returns:
        ``text``, ``same_text`` (always True: the check is shown, not assumed), ``full_tokens_per_s``,
        ``spec_tokens_per_s``, ``measured_speedup``, ``acceptance``, ``tokens_per_verify``, ``c``, ``v``
        (draft step and verify pass over a full step, measured), ``predicted_speedup`` and ``html``.
    """
    kwargs = {"prompt": prompt, "max_new_tokens": max_new_tokens, "return_result": True}
    start = time.perf_counter()
    spec = model.generate(draft_layers=draft_layers, draft_tokens=draft_tokens, draft_lens=draft_lens, **kwargs)
    spec_s = time.perf_counter() - start
    start = time.perf_counter()
    full = model.generate(exit_budget_threshold=0.0, min_layers=0, energy_budget=1.0, **kwargs)
    full_s = time.perf_counter() - start
    stats, n = spec.speculative, spec.new_tokens.shape[1]
    step = sum(full.step_times[1:]) / max(1, len(full.step_times) - 1)  # one full-depth step, prefill excluded
    view = {"same_text": torch.equal(spec.sequences, full.sequences),
            "text": model.tokenizer.decode(spec.sequences[0], skip_special_tokens=True),
            "full_tokens_per_s": full.new_tokens.shape[1] / full_s, "spec_tokens_per_s": n / spec_s,
            "measured_speedup": full_s / spec_s, "acceptance": stats.acceptance_rate,
            "tokens_per_verify": stats.tokens_per_verify}
    if stats.rounds and stats.drafted:
        view["c"] = stats.draft_seconds / stats.drafted / step
        view["v"] = stats.verify_seconds / stats.rounds / step
        a = 0.0 if stats.judged == 0 else stats.acceptance_rate
        view["predicted_speedup"] = expected_speedup(a, draft_tokens, view["c"], view["v"])
    else:
        view["c"] = view["v"] = view["predicted_speedup"] = float("nan")
    view["html"] = (
        f"<b>full depth: {view['full_tokens_per_s']:.1f} tokens/s, speculative (L={draft_layers}, K={draft_tokens}, "
        f"{html.escape(str(draft_lens))} lens): {view['spec_tokens_per_s']:.1f} tokens/s, measured speed-up "
        f"{view['measured_speedup']:.2f}x</b><br>acceptance a = {view['acceptance']:.2f}, "
        f"{view['tokens_per_verify']:.2f} tokens per verify pass, c = {view['c']:.2f}, v = {view['v']:.2f}: "
        f"the formula E/(Kc+v) predicts {view['predicted_speedup']:.2f}x<br>same text as full depth: "
        f"{view['same_text']}<pre>{html.escape(view['text'])}</pre>")
    return view


def speculative_explorer(model, prompt: str = DEFAULT_PROMPT, draft_layers: int = 27, draft_tokens: int = 2,
                         draft_lens: str = "logit", max_new_tokens: int = 24):
    """Sliders for L and K and a lens menu; each change reruns :func:`speculative_view` and shows its HTML."""
    import ipywidgets as widgets

    slider = {"continuous_update": False, "style": {"description_width": "initial"},
              "layout": widgets.Layout(width="420px")}
    layers = widgets.IntSlider(value=draft_layers, min=1, max=model.n_layers - 1, description="draft_layers", **slider)
    tokens = widgets.IntSlider(value=draft_tokens, min=1, max=8, description="draft_tokens", **slider)
    lens = widgets.Dropdown(options=["logit", "tuned"], value=draft_lens, description="draft_lens")
    out = widgets.HTML()
    out.add_class("anee-speculative")

    def update(_change=None):
        try:
            out.value = speculative_view(model, prompt, layers.value, tokens.value, lens.value, max_new_tokens)["html"]
        except ValueError as exc:  # e.g. the tuned lens at a depth it was not trained for
            out.value = f"<b style='color:#b00'>{html.escape(str(exc))}</b>"

    for control in (layers, tokens, lens):
        control.observe(update, names="value")
    update()
    return widgets.VBox([layers, tokens, lens, out])


def plot_acceptance_by_depth(rates: dict[str, dict[str, dict[int, float]]], ax=None):
    """Acceptance rate a against draft depth L, one line per (text, lens)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    for text, by_lens in rates.items():
        for lens, by_layer in by_lens.items():
            layers = sorted(by_layer)
            ax.plot(layers, [by_layer[l] for l in layers], marker="o" if lens == "tuned" else ".",
                    linestyle="-" if lens == "tuned" else "--", label=f"{lens} lens, {text}")
    ax.set_xlabel("draft depth L (layers the draft runs)")
    ax.set_ylabel("acceptance rate a")
    ax.set_ylim(0, 1)
    ax.set_title("How often the shallow draft names the full model's next token")
    ax.legend(fontsize=8)
    return ax.figure


def plot_predicted_speedup(rows: list[dict], ax=None):
    """Measured against predicted speed-up, one point per setting; the diagonal is 'the formula is right'."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    xs = [r["predicted"] for r in rows]
    ys = [r["speedup"] for r in rows]
    ax.scatter(xs, ys)
    for r in rows:
        ax.annotate(r["setting"], (r["predicted"], r["speedup"]), fontsize=7)
    hi = max(xs + ys + [1.2])
    ax.plot([0, hi], [0, hi], color="grey", linewidth=0.8, label="measured = predicted")
    ax.axhline(1.0, color="red", linewidth=0.8, label="no speed-up")
    ax.set_xlabel("predicted speed-up E / (K c + v)")
    ax.set_ylabel("measured speed-up over full-depth greedy")
    ax.set_title("Self-speculative decoding on this CPU")
    ax.legend(fontsize=8)
    return ax.figure


BENCHMARK_FILE = "smollm2-135m_speculative_bench.json"
TEXT_TITLES = {"python_docs_heldout": "in domain (python_docs_heldout)", "kjv_heldout": "out of domain (kjv_heldout)"}


def markdown_tables(bench: dict) -> str:
    """The benchmark's timing rows as the README's Markdown tables, one per text."""
    tables = []
    for name, text in bench["texts"].items():
        header = f"| {TEXT_TITLES.get(name, name)} | tokens/s | measured speed-up | a | tokens per verify | c | v | predicted |"
        lines = [header, "|---|---|---|---|---|---|---|---|"]
        for r in text["rows"]:
            tail = (f"{r['acceptance']:.2f} | {r['tokens_per_verify']:.2f} | {r['c']:.2f} | {r['v']:.2f} | "
                    f"{r['predicted']:.2f}x" if "acceptance" in r else "- | 1 | - | 1 | 1.00x")
            lines.append(f"| {r['setting']} | {r['tokens_per_s']:.2f} | {r['speedup']:.2f}x | {tail} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def load_benchmark(path=None) -> dict:
    """The result of ``benchmarks/bench_speculative.py --out`` shipped for smollm2-135m (or one at ``path``)."""
    import json
    from pathlib import Path

    from ..io.assets import DATA_DIR

    return json.loads(Path(path or DATA_DIR / BENCHMARK_FILE).read_text())


def benchmark_table(bench: dict) -> str:
    """How the benchmark ran, then its timing rows as the README's Markdown tables (:func:`markdown_tables`)."""
    setup = (f"{bench['new_tokens']} new tokens, medians of {bench['repeats']} rotating rounds, "
             f"{bench['threads']} torch thread(s), shared 2-core CPU; identical text in every row")
    return f"{setup}\n\n{markdown_tables(bench)}"
