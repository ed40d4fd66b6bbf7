"""The evaluation texts shipped in ``anee_lite/data`` (sources and licences in its README)."""

from __future__ import annotations

from importlib import resources

import torch
from torch import Tensor

from ..core.validation import check_int

# Three roles, built from disjoint pages and chapters (scripts/make_eval_texts.py): training text teaches the
# tuned lens and the exit probe, calibration text chooses thresholds, held-out text reports. A number
# measured on a text the lens was trained on, or a threshold checked on its own calibration text, flatters.
TEXT_ROLES = {
    "train": ("python_docs_train", "kjv_train"),
    "calibration": ("python_docs_calibration", "kjv_calibration"),
    "heldout": ("python_docs_heldout", "kjv_heldout"),
}
EVAL_TEXTS = ("python_docs_heldout", "python_docs_calibration", "kjv_heldout", "kjv_calibration",
              "python_docs_train", "kjv_train")


def eval_text(name: str = "python_docs_heldout") -> str:
    """One of the texts shipped in ``anee_lite/data`` (see :data:`TEXT_ROLES` and its README for sources).

    Raises:
        ValueError: ``name`` is not one of :data:`EVAL_TEXTS`.
    """
    if not isinstance(name, str) or name not in EVAL_TEXTS:
        raise ValueError(f"unknown evaluation text {name!r}; choose one of {', '.join(EVAL_TEXTS)}")
    return resources.files("anee_lite").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")


def eval_ids(tokenizer, name: str = "python_docs_heldout", n_tokens: int = 300) -> Tensor:
    """The first ``n_tokens`` (>= 1, at most the text's length) tokens of an evaluation text, as [1, n_tokens] ids."""
    n_tokens = check_int("n_tokens", n_tokens, low=1)
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a HuggingFace tokenizer (callable on a string), "
                        f"got {type(tokenizer).__name__}")
    ids = tokenizer(eval_text(name))["input_ids"]
    if len(ids) < n_tokens:  # fewer tokens than asked for would change every number computed on them
        raise ValueError(f"n_tokens must be at most {len(ids)}, the length of {name!r} in this tokenizer, "
                         f"got {n_tokens}")
    return torch.tensor([ids[:n_tokens]])
