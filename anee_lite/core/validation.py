"""Argument checks that fail early with a message naming the parameter and what it accepts.

Nothing is clamped: a value out of range is an error, not a silent fix.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading

import torch
from torch import Tensor

from .controller import as_controller


def as_list(name: str, value, what: str) -> list:
    """A list, tuple, tensor or other iterable as a list; a string is refused (``"12"`` would read as 1 and 2)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    return value.tolist() if isinstance(value, Tensor) else list(value)


def check_fraction(name: str, value, *, low: float = 0.0, high: float = 1.0) -> float:
    """A real number in [low, high] (bools, NaN and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_int(name: str, value, *, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (high=None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def check_flag(name: str, value) -> bool:
    """A real bool (a string such as "no" would otherwise count as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_cache_flag(use_cache, past_key_values) -> bool:
    """``use_cache`` resolved: None means "if a cache is given"; False with a cache is refused (it would grow)."""
    if use_cache is None:
        return past_key_values is not None
    check_flag("use_cache", use_cache)
    if not use_cache and past_key_values is not None:
        raise ValueError("use_cache=False with past_key_values: the forward appends this call's tokens to the "
                         "given cache, so it would grow although no cache is wanted; pass use_cache=True (or "
                         "leave it out) to continue the cache, or drop past_key_values to run without one")
    return use_cache


def check_flags(**flags) -> None:
    """Each keyword must be a real bool."""
    for name, value in flags.items():
        check_flag(name, value)


def check_device(name: str, device) -> torch.device:
    """A device string or torch.device that exists on this machine ("cpu", "cuda", "cuda:1", "mps")."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu', 'cuda' or 'mps', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name} must be a device name such as 'cpu', 'cuda', 'cuda:0' or 'mps', "
                         f"got {device!r}") from None
    available = {"cpu": lambda: True, "meta": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": torch.backends.mps.is_available}.get(dev.type)
    if available is None or not available():
        raise ValueError(f"{name}={device!r}: no such device is available here; use 'cpu'"
                         + (", or install a CUDA build of torch on a machine with a GPU" if dev.type == "cuda" else ""))
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name}={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _check_int_tensor(name: str, t, shape: tuple[int, ...] | None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers (e.g. torch.long), got {t.dtype}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    return t


def check_input_ids(input_ids, d_vocab: int) -> Tensor:
    """[B, T] token ids of any integer dtype, each in [0, d_vocab) -> a torch.long tensor."""
    input_ids = _check_int_tensor("input_ids", input_ids, None)
    # Ids converted to uint8 or int8 wrap past 255 or 127 into other, valid-looking ids: the dtype itself must fit.
    if not input_ids.dtype.is_signed or torch.iinfo(input_ids.dtype).max < d_vocab - 1:
        raise TypeError(f"input_ids must hold a signed integer dtype such as torch.long that can hold every id up to "
                        f"d_vocab - 1 = {d_vocab - 1}, got {input_ids.dtype}")
    if input_ids.device.type == "meta":
        raise ValueError("input_ids must hold real token ids, got a tensor on the 'meta' device (it has no values)")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape [batch, tokens], got {list(input_ids.shape)} "
                         "(use input_ids[None] for a single sequence)")
    if input_ids.numel() == 0:
        raise ValueError(f"input_ids must hold at least one token per row, got shape {list(input_ids.shape)}")
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= d_vocab:
        raise ValueError(f"input_ids must be token ids in [0, {d_vocab - 1}], got values in [{lo}, {hi}]")
    return input_ids.long()  # uint8/int32 ids must index the embedding as numbers, not as a mask


def check_context(dims, n_tokens: int, what: str) -> None:
    """Refuse a sequence of ``n_tokens`` (``what`` says what makes it up) longer than the context window."""
    if n_tokens > dims.n_ctx:
        raise ValueError(f"{what} does not fit the model's context window of {dims.n_ctx} tokens (n_ctx)")


def scalar_exit_layer(exit_layers, n_layers: int) -> int | None:
    """``exit_layers`` as one int in [0, n_layers] when it is a single integer (a Python int or a 0-d integer
    tensor), else None (a per-token tensor, checked by the forward)."""
    if (isinstance(exit_layers, numbers.Integral) and not isinstance(exit_layers, bool)) or (
            isinstance(exit_layers, Tensor) and exit_layers.dim() == 0 and not exit_layers.is_floating_point()
            and not exit_layers.is_complex() and exit_layers.dtype != torch.bool):
        return check_int("exit_layers", int(exit_layers), low=0, high=n_layers)
    return None


def check_generate_inputs(model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, use_cache):
    """Validate greedy generation's own arguments before any step; return ids [B, T] and a long mask [B, T].

    ``model`` is an UnrolledModel already (:func:`~anee_lite.core.model.check_unrolled`).
    """
    dims = model.dims
    input_ids = check_input_ids(input_ids, dims.d_vocab)
    mask = (torch.ones_like(input_ids) if attention_mask is None
            else check_prompt_mask(attention_mask, tuple(input_ids.shape)).to(input_ids.device).long())
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
    check_context(dims, input_ids.shape[1] + max_new_tokens,
                  f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens})")
    for name, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
        if value is not None:  # both are fed back as tokens or compared with the argmax: real vocabulary ids
            check_int(name, value, low=0, high=dims.d_vocab - 1)
    check_flags(use_cache=use_cache)
    return input_ids, mask


def check_generation_knobs(model, exit_layers, controller) -> None:
    """Greedy generation's exit arguments, checked once up front (with ``max_new_tokens=0`` no forward runs).

    The sparsity masks are checked by :func:`anee_lite.core.masks.check_masks`.
    """
    scalar_exit_layer(exit_layers, model.dims.n_layers)  # a per-token tensor is checked by the forward
    if controller is not None:
        check_reads_this_model("controller", as_controller(controller), model)


# return_patterns keeps every layer's [B, H, T, T_k] weights: past 2**29 values (2 GiB in float32) a
# long input would exhaust memory, so it is refused with the length that fits instead.
MAX_PATTERN_VALUES = 2**29


def check_pattern_size(dims, batch: int, tokens: int, keys: int) -> None:
    """Refuse ``return_patterns`` when the stored attention patterns would not fit in memory."""
    values = dims.n_layers * batch * dims.n_heads * tokens * keys
    if values > MAX_PATTERN_VALUES:
        fits = int((MAX_PATTERN_VALUES / (dims.n_layers * batch * dims.n_heads)) ** 0.5)
        raise ValueError(f"return_patterns over {batch} x {tokens} tokens would keep {values * 4 / 2**30:.1f} GiB of "
                         f"attention weights ({dims.n_layers} layers x {dims.n_heads} heads x {tokens} x {keys}); "
                         f"pass about {fits} tokens or fewer")


def check_hf_model(name: str, hf_model) -> None:
    """A HuggingFace causal LM (an nn.Module with a config), not a name or another kind of module."""
    if isinstance(hf_model, (str, bytes)) or not isinstance(hf_model, torch.nn.Module) \
            or not hasattr(hf_model, "config"):
        hint = " (load it first: anee_lite.load_pretrained(name) returns (model, tokenizer))" \
            if isinstance(hf_model, (str, bytes)) else ""
        raise TypeError(f"{name} must be a HuggingFace GPT-2 or Llama causal LM such as GPT2LMHeadModel, "
                        f"got {type(hf_model).__name__}{hint}")


def check_forward_inputs(model, input_ids, attention_mask, exit_layers, cache, controller, logits_to_keep,
                         use_cache=None):
    """Validate the forward's arguments; return ids, the full bool key mask [B, T_past + T], exit layers [B, T]
    and ``use_cache`` resolved (:func:`check_cache_flag`)."""
    dims = model.dims
    input_ids = check_input_ids(input_ids, dims.d_vocab).to(model.device)
    B, T = input_ids.shape

    n_past = 0
    if cache is not None:
        if not hasattr(cache, "owner") or not hasattr(cache, "attention_mask"):
            raise TypeError(f"past_key_values must be the KVCache a forward with use_cache=True returned, "
                            f"got {type(cache).__name__}")
        if cache.owner != model.cache_token or cache.dims != dims:
            raise ValueError("past_key_values must be a cache returned by this same model (it came from another)")
        if cache.batch_size != B:
            raise ValueError(f"past_key_values holds a batch of {cache.batch_size}, but input_ids has batch {B}")
        n_past = len(cache)
    check_context(dims, n_past + T, f"a sequence of {n_past + T} tokens")
    use_cache = check_cache_flag(use_cache, cache)

    if attention_mask is None:
        key_mask = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        if cache is not None:
            key_mask = torch.cat([cache.attention_mask, key_mask], dim=1)
    else:
        key_mask = check_attention_mask(attention_mask, (B, n_past + T)).to(input_ids.device)
        if not bool(key_mask.any()):
            raise ValueError("attention_mask holds no real token (all 0): every position would be masked, "
                             "so there is nothing to attend to; mark real tokens with 1")
        empty = [] if use_cache else rows_without_a_real_token(key_mask)
        if empty:  # only a cache filled chunk by chunk may begin a left-padded row with padding
            raise ValueError(f"attention_mask rows {empty} hold no real token (all 0): their outputs would mean "
                             "nothing; drop those rows, or fill a cache (use_cache=True) chunk by chunk")
        if cache is not None and not torch.equal(key_mask[:, :n_past], cache.attention_mask):
            raise ValueError("attention_mask's first columns must repeat the mask of the tokens in past_key_values")

    if controller is not None and exit_layers is not None:
        raise ValueError("pass either exit_layers or controller, not both")
    if exit_layers is None:
        exit_layers = torch.full((B, T), dims.n_layers, dtype=torch.long, device=input_ids.device)
    elif (layers := scalar_exit_layer(exit_layers, dims.n_layers)) is not None:
        exit_layers = torch.full((B, T), layers, dtype=torch.long, device=input_ids.device)
    else:
        exit_layers = _check_int_tensor("exit_layers", exit_layers, (B, T)).to(input_ids.device, torch.long)
        lo, hi = int(exit_layers.min()), int(exit_layers.max())
        if lo < 0 or hi > dims.n_layers:
            raise ValueError(f"exit_layers must be in [0, {dims.n_layers}] (layers each token runs), "
                             f"got values in [{lo}, {hi}]")
    check_int("logits_to_keep", logits_to_keep, low=0, high=T)
    if controller is not None and not callable(controller):
        raise TypeError(f"controller must be callable as controller(layer, resid, active) -> [B, T] bool, "
                        f"got {type(controller).__name__}")
    check_reads_this_model("controller", controller, model)
    return input_ids, key_mask, exit_layers, use_cache


def check_attention_mask(attention_mask, shape: tuple[int, int]) -> Tensor:
    """A [B, T] tensor of 0/1 (integers, bools, or floats as HF accepts) -> bool mask.

    A row may be all padding here: a left-padded batch fed to the cache in chunks starts that way.
    """
    if isinstance(attention_mask, Tensor) and (attention_mask.dtype == torch.bool or attention_mask.is_floating_point()):
        if attention_mask.is_floating_point() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
        attention_mask = attention_mask.long()
    attention_mask = _check_int_tensor("attention_mask", attention_mask, shape)
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    return attention_mask.bool()  # [B, T]


def rows_without_a_real_token(key_mask: Tensor) -> list[int]:
    """The rows of a bool [B, T] mask that are all padding."""
    return (~key_mask.any(dim=1)).nonzero().flatten().tolist()


def check_prompt_mask(attention_mask, shape: tuple[int, int]) -> Tensor:
    """A prompt's mask for generation: left padding only, at least one real token per row -> bool [B, T]."""
    key_mask = check_attention_mask(attention_mask, shape)  # [B, T]
    empty = rows_without_a_real_token(key_mask)
    if empty:
        raise ValueError(f"attention_mask rows {empty} hold no real token (all 0): every prompt needs at least one")
    right = (~key_mask[:, -1]).nonzero().flatten().tolist()
    if right:
        raise ValueError(f"attention_mask rows {right} end in padding: generation continues after the last "
                         "column, so pad on the left (tokenizer.padding_side = 'left')")
    return key_mask


def check_controller_stop(stop, active: Tensor, layer: int) -> Tensor:
    """What a controller returned before ``layer`` must be a bool tensor shaped like ``active`` [B, T]."""
    if not isinstance(stop, Tensor) or stop.dtype != torch.bool:
        got = f"a {stop.dtype} tensor" if isinstance(stop, Tensor) else repr(type(stop).__name__)
        raise TypeError(f"controller must return a bool tensor [B, T] (True = stop before layer {layer}), got {got}")
    if stop.shape != active.shape:
        raise ValueError(f"controller must return a bool tensor of shape {list(active.shape)} ([B, T]) before "
                         f"layer {layer}, got shape {list(stop.shape)} (it would be broadcast)")
    return stop if stop.device == active.device else stop.to(active.device)


_controllers_in_use: set[int] = set()
_controllers_lock = threading.Lock()


def check_reads_this_model(name: str, reader, model) -> None:
    """A controller or lens that reads a model's weights (its ``model`` attribute) must read ``model``'s.

    Built for another model of the same shape, it would silently decide exits (and supply exit
    logits) from that model's unembedding.
    """
    owner = getattr(reader, "model", None)
    if owner is not None and hasattr(owner, "cache_token") and owner is not model:
        raise ValueError(f"{name} was built for another UnrolledModel (its lens reads that model's weights); "
                         "build it from this model, e.g. LogitLens(model)")


@contextlib.contextmanager
def claim_controller(controller):
    """Let one forward call at a time use ``controller``: it keeps per-call state (checks, the last residual)."""
    if controller is None:
        yield
        return
    key = id(controller)  # the forward holds a reference, so the id cannot be reused meanwhile
    with _controllers_lock:
        if key in _controllers_in_use:
            raise ValueError("controller is already running in another forward call (another thread?); "
                             "give each thread its own controller")
        _controllers_in_use.add(key)
    try:
        yield
    finally:
        with _controllers_lock:
            _controllers_in_use.discard(key)


def check_chunks(name: str, chunks, d_vocab: int) -> list[Tensor]:
    """A non-empty list of [1, T] token-id tensors (T >= 1), as :func:`~anee_lite.adaptive.text_chunks` returns.

    A [B, T] chunk with B > 1 would be cut to its first row without a word, so it is refused.
    """
    if isinstance(chunks, Tensor) or not isinstance(chunks, (list, tuple)):
        hint = " (wrap a single [1, T] tensor in a list: [ids])" if isinstance(chunks, Tensor) else ""
        raise TypeError(f"{name} must be a list of [1, T] token-id tensors, got {type(chunks).__name__}{hint}")
    if not chunks:
        raise ValueError(f"{name} must hold at least one [1, T] chunk of token ids, got an empty list")
    for i, ids in enumerate(chunks):
        ids = _check_int_tensor(f"{name}[{i}]", ids, None)
        if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
            raise ValueError(f"{name}[{i}] must have shape [1, T] with T >= 1 (one row of tokens), "
                             f"got {list(ids.shape)}")
        check_input_ids(ids, d_vocab)
    return list(chunks)


def check_layers(name: str, layers, *, low: int, high: int) -> list[int]:
    """A non-empty iterable of distinct integer layer indices, each in [low, high] -> a list in the given order."""
    items = as_list(name, layers, f"a list of layer indices in [{low}, {high}]")
    if not items:
        raise ValueError(f"{name} must hold at least one layer index in [{low}, {high}], got none")
    items = [check_int(f"{name} entries", layer, low=low, high=high) for layer in items]
    if len(set(items)) != len(items):
        raise ValueError(f"{name} must not repeat a layer, got {items}")
    return items
