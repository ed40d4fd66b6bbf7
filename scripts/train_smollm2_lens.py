"""Train the tuned lens and the exit probe shipped in ``anee_lite/data/`` for smollm2-135m (CPU, ~5-10 min).

    python scripts/train_smollm2_lens.py [--steps 60] [--lr 1e-4] [--out anee_lite/data]

Training text: the in-domain calibration file (Python docs) plus text the model itself samples
from Python-documentation-like prompts (seeded). The held-out files are never read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from anee_lite.adaptive.probe import probe_labels, train_probe
from anee_lite.core.model import UnrolledModel
from anee_lite.io.assets import SMOLLM2_EXIT_LAYERS, lens_path, probe_path
from anee_lite.io.loading import load_pretrained
from anee_lite.lens import collect_residuals, train_tuned_lens

DATA = Path(__file__).resolve().parents[1] / "anee_lite" / "data"
PROMPTS = [
    "The Python tutorial explains how", "A list in Python is", "To install a package, you",
    "Floating point numbers are", "When you run the interpreter,", "The standard library provides",
    "Exceptions are raised when", "A virtual environment lets you", "Sorting a list of records",
    "Modules and packages help", "The history of computing", "In this chapter we describe",
]


def sample_text_chunks(hf_model, tokenizer, n_new: int, seed: int) -> list[torch.Tensor]:
    """[1, T] chunks the model writes itself from PROMPTS (sampling, temperature 0.8)."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = hf_model.generate(**enc, max_new_tokens=n_new, do_sample=True, temperature=0.8, top_p=0.95,
                                pad_token_id=tokenizer.pad_token_id)
    return [row[row != tokenizer.pad_token_id][None] for row in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--sampled-tokens", type=int, default=200, help="new tokens sampled per prompt")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    hf_model, tokenizer = load_pretrained("smollm2-135m")
    model = UnrolledModel(hf_model, share_weights=True)  # the library loaded it: no second copy
    ids = tokenizer((DATA / "python_docs_calibration.txt").read_text(), return_tensors="pt").input_ids
    chunks = list(ids.split(256, dim=1)) + sample_text_chunks(hf_model, tokenizer, args.sampled_tokens, seed=0)
    print(f"{sum(c.shape[1] for c in chunks)} training tokens in {len(chunks)} chunks "
          f"({time.perf_counter() - start:.0f} s)")
    layers = list(SMOLLM2_EXIT_LAYERS)
    data = collect_residuals(model, chunks, layers)
    lens = train_tuned_lens(model, data, layers, steps=args.steps, lr=args.lr)
    probe = train_probe(lens, data, layers)
    args.out.mkdir(parents=True, exist_ok=True)
    lens.save(lens_path(args.out), model_name="smollm2-135m")
    probe.save(probe_path(args.out), model_name="smollm2-135m")
    from anee_lite.lens import LogitLens
    plain, tuned = probe_labels(LogitLens(model), data, layers), probe_labels(lens, data, layers)
    for i, layer in enumerate(layers):
        print(f"layer {layer:2d}: top-1 agreement on training text, logit lens {plain[i].mean():.3f}, "
              f"tuned lens {tuned[i].mean():.3f}")
    print(f"wrote {lens_path(args.out)} and {probe_path(args.out)} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
