"""Train the tuned lens and the exit probe shipped in ``anee_lite/data/`` for smollm2-135m (CPU, ~12 min).

    python scripts/train_smollm2_lens.py [--steps 60] [--lr 1e-4] [--out anee_lite/data]

Training text: the shipped *training* texts only (``TEXT_ROLES["train"]``: Python documentation pages
and Bible chapters kept apart from every calibration and held-out text, see anee_lite/data/README.md)
plus text the model samples itself from seeded prompts on other topics. Calibration and held-out
texts are never read, so thresholds chosen on them and numbers reported on them are not flattered.

The translators are stored as fp16; the probe is trained on the lens as stored (re-read from the file),
so its labels are those of the readout that ships. (A rank-128 truncated SVD of each translator would halve
the file, but it dropped the lens's top-1 agreement after layer 7 from 0.36 to 0.16: these maps are not low-rank.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from anee_lite.adaptive.probe import probe_labels, train_probe
from anee_lite.core.model import UnrolledModel
from anee_lite.io import TEXT_ROLES, eval_text
from anee_lite.io.assets import SMOLLM2_EXIT_LAYERS, lens_path, probe_path
from anee_lite.io.loading import load_pretrained
from anee_lite.lens import LogitLens, TunedLens, collect_residuals, train_tuned_lens

DATA = Path(__file__).resolve().parents[1] / "anee_lite" / "data"
REPORT_TOKENS = 4096  # the agreements printed at the end: each lens read out on all tokens would take minutes
# Topics the calibration and held-out pages do not cover (they are on sorting, floating point, venv, ipaddress).
PROMPTS = [
    "The Python tutorial explains how", "A dictionary in Python is", "To read a file line by line, you",
    "Generators are functions that", "When a module is imported,", "The standard library provides",
    "Exceptions are raised when", "A class defines", "Regular expressions let you",
    "Decorators wrap a function", "The history of computing", "In this chapter we describe",
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
    chunks = []
    for name in TEXT_ROLES["train"]:
        chunks += list(tokenizer(eval_text(name), return_tensors="pt").input_ids.split(256, dim=1))
    chunks = [c for c in chunks if c.shape[1] >= 2] + sample_text_chunks(hf_model, tokenizer, args.sampled_tokens, seed=0)
    print(f"{sum(c.shape[1] for c in chunks)} training tokens in {len(chunks)} chunks "
          f"({time.perf_counter() - start:.0f} s)")
    layers = list(SMOLLM2_EXIT_LAYERS)
    data = collect_residuals(model, chunks, layers)
    dense = train_tuned_lens(model, data, layers, steps=args.steps, lr=args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    dense.save(lens_path(args.out), model_name="smollm2-135m")
    lens = TunedLens.load(model, lens_path(args.out))  # what ships: the probe learns its readout
    probe = train_probe(lens, data, layers)
    probe.save(probe_path(args.out), model_name="smollm2-135m")
    sample = {"resid": data["resid"][:, :REPORT_TOKENS], "final_top1": data["final_top1"][:REPORT_TOKENS]}
    plain, full, stored = (probe_labels(x, sample, layers) for x in (LogitLens(model), dense, lens))
    for i, layer in enumerate(layers):
        print(f"layer {layer:2d}: top-1 agreement on {REPORT_TOKENS} training tokens: logit lens {plain[i].mean():.3f}, "
              f"tuned lens {full[i].mean():.3f}, as stored (fp16) {stored[i].mean():.3f}")
    print(f"wrote {lens_path(args.out)} ({lens_path(args.out).stat().st_size / 1e6:.1f} MB) and "
          f"{probe_path(args.out)} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
