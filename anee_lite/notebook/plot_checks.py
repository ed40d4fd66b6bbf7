"""Input checks shared by the plot helpers: a wrong argument is a ValueError/TypeError naming it, not a matplotlib trace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor

from ..core.validation import as_list, check_int


def require_keys(name: str, rows, keys: Iterable[str]) -> None:
    """``rows``: one mapping or a non-empty list of mappings, each holding every key in ``keys``."""
    items = [rows] if isinstance(rows, Mapping) else rows
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(r, Mapping) for r in items):
        raise TypeError(f"{name} must be a dict or a non-empty list of dicts, got {type(rows).__name__}")
    for row in items:
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{name} lacks {missing} (it needs {list(keys)})")


def require_same_length(**sequences) -> None:
    """Every keyword is a sequence, all of one non-zero length (x and y values of one plot)."""
    lengths = {name: len(seq) if hasattr(seq, "__len__") and not isinstance(seq, str) else None
               for name, seq in sequences.items()}
    if any(n is None for n in lengths.values()):
        raise TypeError(f"{', '.join(sequences)} must be lists of numbers, got lengths {lengths}")
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"{', '.join(sequences)} must be non-empty and of one length, got {lengths}")


def require_items(name: str, mapping, cls: type) -> None:
    """``mapping``: a non-empty dict whose values are all ``cls``."""
    if not isinstance(mapping, Mapping) or not mapping or not all(isinstance(v, cls) for v in mapping.values()):
        raise TypeError(f"{name} must be a non-empty dict of label -> {cls.__name__}, got {type(mapping).__name__}"
                        + (f" holding {sorted({type(v).__name__ for v in mapping.values()})}"
                           if isinstance(mapping, Mapping) else ""))


def check_exit_list(exit_layers, n_layers, tokens=None) -> list[int]:
    """One sequence's exit layers (a list or a 1-d tensor) as ints in [0, n_layers], one per token if tokens are given.

    A [B, T] ``stats.exit_layers`` (pass ``[0]`` of it), a depth past ``n_layers`` or labels for other
    tokens were drawn without a word, or failed deep inside matplotlib.
    """
    n_layers = check_int("n_layers", n_layers, low=1)
    if isinstance(exit_layers, Tensor) and exit_layers.dim() != 1:
        raise ValueError(f"exit_layers must be one sequence's [T] exit layers, got shape {list(exit_layers.shape)} "
                         "(for a forward's stats.exit_layers [B, T], pass stats.exit_layers[0])")
    exit_layers = [check_int("exit_layers entries", e, low=0, high=n_layers)
                   for e in as_list("exit_layers", exit_layers, "a list of layer counts")]
    if tokens is not None and len(tokens) != len(exit_layers):
        raise ValueError(f"tokens must hold one label per exit layer: {len(tokens)} tokens for "
                         f"{len(exit_layers)} exit layers")
    return exit_layers
