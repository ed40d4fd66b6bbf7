"""Calibrate the activation-sparsity quantile table shipped in ``anee_lite/data/`` for smollm2-135m (~10 s).

    python scripts/calibrate_activation_sparsity.py [--tokens 1024] [--out anee_lite/data]

Reads the first ``--tokens`` tokens of the Python-docs calibration text (never a held-out file) and
stores the 0%..100% quantiles of the magnitude of every matrix's input, per layer
(:func:`anee_lite.sparsity.calibrate.input_quantiles`); ``ANEEWrapper.activation_thresholds`` reads
the thresholds for any fraction off it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anee_lite.core.model import UnrolledModel
from anee_lite.io.assets import OFFLINE_ALIAS, activation_quantiles_path
from anee_lite.io.loading import load_pretrained
from anee_lite.io.texts import eval_ids
from anee_lite.sparsity.calibrate import CALIBRATION_TEXT, CALIBRATION_TOKENS, input_quantiles, save_quantiles

DATA = Path(__file__).resolve().parents[1] / "anee_lite" / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=CALIBRATION_TOKENS)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    hf, tokenizer = load_pretrained(OFFLINE_ALIAS)
    model = UnrolledModel(hf)
    table = input_quantiles(model, eval_ids(tokenizer, CALIBRATION_TEXT, args.tokens), progress=True)
    path = activation_quantiles_path(args.out)
    save_quantiles(path, table, model)
    print(f"wrote {path}: quantiles {list(table.shape)} of |input| per layer and matrix, {args.tokens} tokens "
          f"of {CALIBRATION_TEXT}; 50% thresholds of layer 15: {table[50, 15].tolist()}")


if __name__ == "__main__":
    main()
