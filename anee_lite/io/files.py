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
