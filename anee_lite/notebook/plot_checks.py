"""Input checks shared by the plot helpers: a wrong argument is a ValueError/TypeError naming it, not a matplotlib trace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


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
