"""The offline model's cache on disk: the writer's lock, leftovers of dead writers, the manifest, the checks.

A cache writer (converting the GGUF) and every load's temporary folder of links hold an flock on a lock
file named with their token; whatever carries a token nobody holds any more was left by a process that
died (Ctrl-C, kill -9) and is removed by the next load. A finished cache lists its files with SHA-256
digests in ``manifest.json``; a load verifies them and rebuilds a damaged cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import uuid

# Q4_1 stores 32 weights in 20 bytes (4 bits each plus a 16-bit scale and minimum); float32 needs 128.
DEQUANT_FACTOR = 128 / 20

try:  # POSIX: a writer holds an flock on its lock file, so a later load can tell a dead writer's leftovers
    import fcntl
except ImportError:  # Windows: leftovers of writers with a lock file are left alone
    fcntl = None

# A writer (a conversion next to the cache folder, or a load's folder of links in the temp directory)
# first creates and flocks ``.<name>.<token>.lock``, then works in ``.<name>.tmp-<token>`` (a conversion
# also moves the previous folder aside to ``.<name>.old-<token>``); it removes both before it deletes
# its lock file. The kernel drops an flock when its process dies, however it dies. So a ``tmp``/``old`` entry whose lock file is gone
# or no longer locked belongs to a dead writer (killed, crashed, power cut), and any load may
# remove it; a locked one belongs to a live writer and is left alone.


class ModelUnavailableError(OSError, ValueError):
    """A model exists in principle but cannot be obtained here (no network, missing wheel).

    It is an ``OSError`` like HuggingFace's own download errors, and a ``ValueError`` so that
    callers handling bad model names catch it too.
    """


class OfflineCacheError(ModelUnavailableError):
    """The offline model's cache folder cannot be created or written (a file in the way, read-only, full).

    Raised before the conversion starts whenever the problem can be seen then; the message names
    the path and says what to do (usually: point ``XDG_CACHE_HOME`` at a writable folder).
    """


MANIFEST = "manifest.json"


_MANIFEST_FORMAT = 1


_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


_HASH_CHUNK = 8 << 20


CACHE_ADVICE = (
    "set XDG_CACHE_HOME to a writable folder with about 1 GB free (the cache goes to "
    "$XDG_CACHE_HOME/anee-lite/smollm2-135m), or fix that folder's permissions"
)


def check_cache_parent(folder: pathlib.Path, gguf_path: pathlib.Path) -> None:
    """Fail in milliseconds, not after the conversion, when the cache cannot be written."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OfflineCacheError(
            f"Cannot create the offline model cache folder {parent} ({exc.strerror or exc}); {CACHE_ADVICE}"
        ) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OfflineCacheError(f"The offline model cache folder {parent} is not writable; {CACHE_ADVICE}")
    needed = int(gguf_path.stat().st_size * DEQUANT_FACTOR)
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise OfflineCacheError(
            f"Not enough free space for the offline model cache in {parent}: the converted weights need "
            f"about {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB are free; free some space or {CACHE_ADVICE}"
        )


def leftover_path(folder: pathlib.Path, kind: str, token: str) -> pathlib.Path:
    return folder.with_name(f".{folder.name}.{kind}-{token}")


def lock_path(folder: pathlib.Path, token: str) -> pathlib.Path:
    return folder.with_name(f".{folder.name}.{token}.lock")


@contextlib.contextmanager
def writer_lock(folder: pathlib.Path, advice: str = CACHE_ADVICE):
    """Create and hold this writer's lock file; yield its token. ``advice``: what to do when it cannot be made."""
    while True:
        token = uuid.uuid4().hex
        path = lock_path(folder, token)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            raise OfflineCacheError(f"Cannot write in {folder.parent} ({exc.strerror or exc}); {advice}") from exc
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken the file for a dead writer's between os.open and flock: start again.
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.write(fd, f"pid {os.getpid()}\n".encode())
        yield token
    finally:
        remove(leftover_path(folder, "tmp", token))
        remove(leftover_path(folder, "old", token))
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _same_file(fd: int, path: pathlib.Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def remove_dead_leftovers(folder: pathlib.Path) -> None:
    """Remove staging/retired folders and lock files that dead writers left next to ``folder``."""
    pattern = re.compile(rf"^\.{re.escape(folder.name)}\.(?:(tmp|old)-(\w+)|(\w+)\.lock)$")
    try:
        entries = list(folder.parent.iterdir())
    except OSError:
        return  # no parent yet (nothing to clean), or unreadable: the load reports the real problem
    tokens = {m.group(2) or m.group(3) for m in map(pattern.match, (e.name for e in entries)) if m}
    for token in sorted(tokens):
        _remove_if_dead(folder, token)


def _remove_if_dead(folder: pathlib.Path, token: str) -> None:
    leftovers = [leftover_path(folder, "tmp", token), leftover_path(folder, "old", token)]
    lock = lock_path(folder, token)
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:  # the writer removes its folders before its lock file: these are orphans
        for path in leftovers:
            remove(path)
        return
    except OSError:
        return
    try:
        if fcntl is None:
            return  # cannot tell a live writer from a dead one here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a live writer holds it
        if not _same_file(fd, lock):
            return  # someone else cleaned it up meanwhile
        for path in leftovers:
            remove(path)
        with contextlib.suppress(OSError):
            lock.unlink()
    finally:
        os.close(fd)


def remove(path: pathlib.Path) -> None:
    """Delete a file, link or folder tree if it exists (a retired cache may be a file a user put there)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


def swap_into_place(staging: pathlib.Path, folder: pathlib.Path, retired: pathlib.Path) -> None:
    # Directories cannot be renamed over non-empty ones, so the old one moves aside first; a
    # reader therefore sees either a complete old folder, a complete new one, or none.
    if folder.exists() or folder.is_symlink():
        os.replace(folder, retired)
    try:
        os.replace(staging, folder)
    except OSError:
        # Another process finished its own (complete) build in between: keep that one.
        if not folder.is_dir():
            raise
    finally:
        remove(retired)


def _file_digest(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: pathlib.Path, gguf_path: pathlib.Path) -> None:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": _file_digest(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {
        "format": _MANIFEST_FORMAT,
        "source": {"file": gguf_path.name, "size": gguf_path.stat().st_size},
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def verify_cache(folder: pathlib.Path, gguf_path: pathlib.Path | None = None) -> str | None:
    """Return what is wrong with the cache at ``folder``, or ``None`` if it is intact.

    Checks that the manifest lists the required files and that every listed file has its
    recorded size and sha256. With ``gguf_path``, also checks the cache was built from a GGUF of
    that name and size (a changed wheel means a stale cache).
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} is unreadable: {exc}"
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return f"{MANIFEST} has an unknown format"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return f"{MANIFEST} lists no files"
    for required in _REQUIRED_FILES:
        if required not in files:
            return f"{MANIFEST} does not list {required}"
    if gguf_path is not None and manifest.get("source") != {
        "file": gguf_path.name,
        "size": gguf_path.stat().st_size,
    }:
        return "it was built from a different GGUF file"
    # Sizes first: a truncated file is caught without reading half a gigabyte.
    for name, entry in files.items():
        if pathlib.Path(name).name != name or not isinstance(entry, dict):
            return f"{MANIFEST} has an invalid entry for {name!r}"
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry.get("size"):
            return f"{name} has {size} bytes, expected {entry.get('size')}"
    for name, entry in files.items():
        if _file_digest(folder / name) != entry.get("sha256"):
            return f"{name} does not match its sha256 checksum"
    return None
