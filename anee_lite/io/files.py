"""Reading and writing the library's files so that a crash, Ctrl-C or a second writer never leaves half a file,
and a damaged or foreign file is refused with its path."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

# Sizes an artefact may record of the model it was made for; each one recorded must match the model it is used with.
MODEL_SIZES = ("d_model", "n_layers", "d_vocab")


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8, or bytes) to a private temporary file next to ``path``, then rename it
    over ``path``.

    The rename is atomic, so readers see the old file or the new one, never a mix; the folder must exist.
    """
    target = Path(path)
    with tempfile.NamedTemporaryFile("wb", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp",
                                     delete=False) as handle:
        tmp = Path(handle.name)
    try:
        tmp.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)  # not mkstemp's 0600
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tensors_digest(tensors: dict) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order (the file layout does not matter)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # [n]; a 0-d tensor too
        digest.update(f"{name}|{t.dtype}|{list(tensors[name].shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())  # the raw bytes, whatever the dtype
    return digest.hexdigest()


def write_safetensors(path: str | os.PathLike, tensors: dict, kind: str, metadata: dict[str, str]) -> None:
    """Write an artefact for :func:`read_safetensors`: atomically, with its ``kind`` and a checksum of its tensors.

    Args:
        path: the file (its folder must exist).
        tensors: name -> tensor (contiguous).
        kind: what it is, e.g. ``"tuned_lens"``.
        metadata: strings to keep beside it, e.g. the :data:`MODEL_SIZES` of the model it belongs to.
    """
    from safetensors.torch import save

    write_atomically(path, save(tensors, metadata={**metadata, "kind": kind, "sha256": tensors_digest(tensors)}))


def read_safetensors(path: str | os.PathLike, kind: str, dims=None) -> tuple[dict, dict[str, str]]:
    """The tensors and metadata of a safetensors artefact (tuned lens, exit probe, activation quantiles).

    Every file the library reads, shipped or user-made, goes through here: the errors name the path
    and say what is wrong. Values that are not finite (a NaN) are refused, and so is a file whose
    tensors no longer match the checksum :func:`write_safetensors` recorded (any flipped byte).

    Args:
        path: the file.
        kind: what it must be: its ``kind`` metadata (written by the artefact's ``save``).
        dims: the ``ModelDims`` of the model it will be used with: every :data:`MODEL_SIZES` entry the
            file records must match.

    Raises:
        FileNotFoundError: no file there.
        TypeError: ``path`` is not a path.
        ValueError: a folder, an empty, truncated, damaged or foreign file, another kind, a non-finite value,
            or a file made for a model of other sizes.
    """
    import torch
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r} ({type(path).__name__})")
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
    if "sha256" in meta and meta["sha256"] != tensors_digest(tensors):  # files saved before checksums have none
        raise ValueError(f"{p} is damaged: its tensors no longer match the SHA-256 recorded when it was saved")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{p}: tensor {name!r} holds NaN or infinite values: the file is damaged")
    if dims is not None:
        made_for = {k: meta[k] for k in MODEL_SIZES if k in meta}
        if any(v != str(getattr(dims, k)) for k, v in made_for.items()):
            ours = {k: getattr(dims, k) for k in made_for}
            raise ValueError(f"{p} was made for a model with {_sizes(made_for)}, but this model has {_sizes(ours)}")
    return tensors, meta


def _sizes(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items())


def layer_tensors(path: str | os.PathLike, tensors: dict, parts: tuple[str, ...]) -> dict[str, dict[int, object]]:
    """``layer.{l}.{part}`` tensors -> {part: {l: tensor}}; any other key names the path in a ValueError."""
    out: dict[str, dict[int, object]] = {part: {} for part in parts}
    for key, t in tensors.items():
        pieces = key.split(".")
        if len(pieces) != 3 or pieces[0] != "layer" or not pieces[1].isdigit() or pieces[2] not in parts:
            raise ValueError(f"{path}: unexpected tensor {key!r} (expected layer.<index>.{{{','.join(parts)}}})")
        out[pieces[2]][int(pieces[1])] = t
    return out
