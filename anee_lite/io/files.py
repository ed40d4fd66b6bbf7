"""Writing result files so that a crash, Ctrl-C or a second writer never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, content: str) -> None:
    """Write ``content`` to a private temporary file next to ``path``, then rename it over ``path``.

    The rename is atomic, so readers see the old file or the new one, never a mix; the folder must exist.
    """
    target = Path(path)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.",
                                     suffix=".tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        tmp.write_text(content, encoding="utf-8")
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)  # not mkstemp's 0600
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_safetensors(path: str | os.PathLike, kind: str) -> tuple[dict, dict[str, str]]:
    """The tensors and metadata of a safetensors artefact (tuned lens, exit probe, activation quantiles).

    Every file the library reads, shipped or user-made, goes through here: the errors name the path
    and say what is wrong, and values that are not finite (a flipped bit, a NaN) are refused.

    Args:
        path: the file.
        kind: what it must be: its ``kind`` metadata (written by the artefact's ``save``).

    Raises:
        FileNotFoundError: no file there.
        ValueError: a folder, an empty, truncated or foreign file, another kind, or a non-finite value.
    """
    import torch
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    p = Path(path)
    what = kind.replace("_", "-")
    a_what = ("an " if what[0] in "aeiou" else "a ") + what  # "an exit-probe", "a tuned-lens"
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not {a_what} file")
    if not p.is_file():
        raise FileNotFoundError(f"no {what} file at {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:  # empty, truncated, not safetensors, unreadable
        raise ValueError(f"{p} is not {a_what} file (not a complete safetensors file: {exc})") from None
    if meta.get("kind") != kind:
        raise ValueError(f"{p} is not {a_what} file (its metadata says kind={meta.get('kind')!r})")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{p}: tensor {name!r} holds NaN or infinite values: the file is damaged")
    return tensors, meta


def layer_tensors(path: str | os.PathLike, tensors: dict, parts: tuple[str, ...]) -> dict[str, dict[int, object]]:
    """``layer.{l}.{part}`` tensors -> {part: {l: tensor}}; any other key names the path in a ValueError."""
    out: dict[str, dict[int, object]] = {part: {} for part in parts}
    for key, t in tensors.items():
        pieces = key.split(".")
        if len(pieces) != 3 or pieces[0] != "layer" or not pieces[1].isdigit() or pieces[2] not in parts:
            raise ValueError(f"{path}: unexpected tensor {key!r} (expected layer.<index>.{{{','.join(parts)}}})")
        out[pieces[2]][int(pieces[1])] = t
    return out
