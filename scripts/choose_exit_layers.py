"""Where should the shipped smollm2-135m controllers be allowed to stop? Replayed on the training text only.

    python scripts/choose_exit_layers.py [--tokens 2048]

For each set of exit layers "7 up to L" (L = 29, 27, ..., 13) it replays the learned controller on full-depth
states of the first ``--tokens`` tokens of ``python_docs_train`` (every token stops at the first allowed layer
where the probe's score reaches the threshold; no state propagation, checks free), finds the cheapest
threshold of a fixed grid whose agreement with the full model reaches 0.8 and 0.9, and prints its cost in
FLOPs. ``SMOLLM2_CONTROLLER_EXIT_LAYERS`` in ``anee_lite/io/assets.py`` is the cheapest set at 0.9. No
calibration or held-out text is read: the choice is made before calibration, as Learn-then-Test requires.
"""

from __future__ import annotations

import argparse

import torch

from anee_lite.adaptive.calibration import build_replay, replay_scores, text_chunks
from anee_lite.adaptive.evaluate import build_controller
from anee_lite.core.model import UnrolledModel
from anee_lite.cost import cost_fraction, early_exit_cost
from anee_lite.io import eval_text
from anee_lite.io.assets import SMOLLM2_EXIT_LAYERS
from anee_lite.io.loading import load_pretrained

GRID = torch.linspace(0.3, 0.99, 70).tolist()  # thresholds on the probe's P(readout is final)
TARGETS = (0.8, 0.9)


def replayed_exits(scores, right, layers, threshold, n_layers):
    """Exit layer and agreement per token when stopping at the first of ``layers`` whose score reaches ``threshold``."""
    exits = torch.full((scores.shape[1],), n_layers)  # [N]
    agree = torch.ones(scores.shape[1], dtype=torch.bool)  # [N] full depth agrees with itself
    for layer in reversed(layers):  # the first allowed layer that fires wins
        fire = scores[layer] >= threshold  # [N]; NaN (not scored) never fires
        exits = torch.where(fire, layer, exits)
        agree = torch.where(fire, right[layer], agree)
    return exits, agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="training tokens replayed; default 2048")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    hf, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf)
    n = model.dims.n_layers
    lens_layers = list(SMOLLM2_EXIT_LAYERS)
    controller = build_controller(model, "smollm2-135m", "learned", exit_layers_allowed=lens_layers)
    replay = build_replay(model, text_chunks(tokenizer, eval_text("python_docs_train"), max_tokens=args.tokens))
    scores = replay_scores(replay, controller)  # [n_layers, N]
    right = torch.zeros(n, replay.n_tokens, dtype=torch.bool)  # [n_layers, N] readout top-1 == final top-1
    for layer in lens_layers:
        right[layer] = replay.readout_top1(controller.lens, layer) == replay.final_top1
    def translators(layer):  # checks free, as for the oracle; the exit's own lens readout is charged
        return {"readout_translator_macs": controller.lens.translator_macs(layer)}

    print(f"learned controller replayed on {replay.n_tokens} training tokens; cost = FLOPs over the full model's\n")
    print(f"{'exit layers':<16}" + "".join(f"{'cost @ ' + str(t):>14}" for t in TARGETS))
    for last in range(lens_layers[-1], 12, -2):
        layers = [layer for layer in lens_layers if layer <= last]
        costs = []
        for target in TARGETS:
            best = 1.0
            for threshold in GRID:
                exits, agree = replayed_exits(scores, right, layers, threshold, n)
                if float(agree.float().mean()) >= target:
                    spent, full = early_exit_cost(model.dims, exits, replay.positions, replay.chunk_ids, translators)
                    best = min(best, cost_fraction(spent, full))
            costs.append(best)
        print(f"{f'{layers[0]}-{layers[-1]} ({len(layers)})':<16}" + "".join(f"{c:14.3f}" for c in costs))


if __name__ == "__main__":
    main()
