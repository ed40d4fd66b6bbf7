"""The seed's sanity check: the same prompt under a full and a starved energy budget."""

from __future__ import annotations

import time

PROMPT = "The future of artificial intelligence is"


def pick_model(requested: str | None = None) -> tuple[str, str]:
    """The model to run and why: GPT-2 when the hub answers, else the offline SmolLM2."""
    from .loading import OFFLINE_ALIAS, hub_reachable

    if requested:
        return requested, "as requested"
    if hub_reachable():
        return "gpt2", "the HuggingFace hub is reachable"
    return OFFLINE_ALIAS, "the HuggingFace hub is not reachable, so the offline model runs instead of GPT-2"


def run_sanity_check(model_name: str | None = None, max_new_tokens: int = 20) -> dict:
    """Generate from :data:`PROMPT` with energy_budget 1.0 and 0.05 and print what happened.

    Returns:
        ``{"model", "n_layers", "runs": [{"energy_budget", "layers_executed", "text", "seconds"}]}``.
    """
    from .config import ANEEConfig
    from .wrapper import ANEEWrapper

    name, why = pick_model(model_name)
    print(f"Model: {name} ({why})")
    model = ANEEWrapper(ANEEConfig(model_name=name, min_layers=2, exit_budget_threshold=0.1))
    print(f"{model.n_layers} layers; min_layers=2, exit_budget_threshold=0.1; prompt: {PROMPT!r}\n")
    runs = []
    for budget, label in ((1.0, "Full budget"), (0.05, "Low budget")):
        start = time.perf_counter()
        text = model.generate(prompt=PROMPT, max_new_tokens=max_new_tokens, energy_budget=budget)
        seconds = time.perf_counter() - start
        layers = model.exit_layer(budget)
        print(f"{label} (energy_budget={budget}): {layers}/{model.n_layers} layers per token, {seconds:.1f} s")
        print(f"  {text!r}\n")
        runs.append({"energy_budget": budget, "layers_executed": layers, "text": text, "seconds": seconds})
    return {"model": name, "n_layers": model.n_layers, "runs": runs}
