"""Magnitude thresholds for activation sparsity, calibrated on text (TEAL, CATS).

TEAL (Liu et al. 2024, arXiv:2408.14690) zeroes the small entries of the input of *every* matrix of
a block, each with its own threshold: the magnitude below which the wanted share of that input
falls on calibration text. At run time a token keeps ``|x| >= threshold``: a compare, not a sort.
CATS (Lee et al. 2024, arXiv:2404.08763) does the same for the MLP's hidden activations only.

The magnitudes of each input are summarised once as a table of quantiles (:func:`input_quantiles`,
[levels, n_layers, 4]); the thresholds for any fraction are read off it
(:func:`thresholds_from_quantiles`), so one calibration pass serves every slider position.
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..core.masks import LINEAR_INPUT_HOOKS, LINEAR_INPUTS, ActivationThresholds
from ..core.model import UnrolledModel
from ..core.validation import check_flag, check_fraction, check_input_ids, check_int
from ..io.assets import activation_quantiles_path, is_smollm2
from ..io.files import read_safetensors
from ..io.texts import eval_ids

CALIBRATION_TEXT = "python_docs_calibration"  # never a held-out text
CALIBRATION_TOKENS = 1024
QUANTILE_LEVELS = 101  # the table holds the 0%, 1%, ..., 100% quantiles of every input's magnitude
SAMPLES_PER_CHUNK = 1 << 15  # magnitudes kept per (layer, matrix) and chunk: quantiles to about 0.3%


@torch.no_grad()
def input_quantiles(model: UnrolledModel, input_ids: Tensor, *, chunk: int | None = None, skip_layers=None,
                    head_mask: Tensor | None = None, mlp_mask: Tensor | None = None,
                    progress: bool = False) -> Tensor:
    """Quantiles of the magnitude of every matrix's input, layer by layer: [QUANTILE_LEVELS, n_layers, 4].

    Args:
        model: the unrolled model.
        input_ids: [B, T] calibration tokens, cut into pieces of ``chunk`` tokens (each its own context).
        chunk: tokens per forward call, 1..n_ctx (default: 128, or n_ctx if shorter); bounds the
            memory of the recorded activations.
        skip_layers, head_mask, mlp_mask: the other knobs it will run with. Only the entries that
            still run count: a skipped layer's row is zero, a removed head's or neuron's entries
            (always zero) are left out, so the fraction is of what runs.
        progress: show a progress bar over the chunks.

    Returns:
        ``q[i, l, m]``: the ``i / (QUANTILE_LEVELS - 1)`` quantile of ``|input|`` of matrix
        ``LINEAR_INPUTS[m]`` at layer ``l`` over all calibration tokens (a seeded random sample of
        at most :data:`SAMPLES_PER_CHUNK` per chunk when there are more).
    """
    input_ids = check_input_ids(input_ids, model.dims.d_vocab).to(model.device)  # [B, T]
    chunk = min(128, model.dims.n_ctx) if chunk is None else check_int("chunk", chunk, low=1, high=model.dims.n_ctx)
    check_flag("progress", progress)
    dims = model.dims
    gen = torch.Generator().manual_seed(0)
    samples: list[list[list[Tensor]]] = [[[] for _ in LINEAR_INPUTS] for _ in range(dims.n_layers)]
    starts = range(0, input_ids.shape[1], chunk)
    for start in tqdm(starts, desc="calibrating activation sparsity", disable=not progress, leave=False):
        acts = model(input_ids[:, start:start + chunk], return_linear_inputs=True, skip_layers=skip_layers,
                     head_mask=head_mask, mlp_mask=mlp_mask).activations
        for layer in range(dims.n_layers):
            for site, hook in enumerate(LINEAR_INPUT_HOOKS):
                x = acts.get(f"blocks.{layer}.{hook}")  # absent for a skipped layer
                if x is not None:
                    samples[layer][site].append(_sample(_running_entries(x, layer, site, dims, head_mask, mlp_mask),
                                                        gen))
    levels = torch.linspace(0, 1, QUANTILE_LEVELS)
    table = torch.zeros(QUANTILE_LEVELS, dims.n_layers, len(LINEAR_INPUTS))
    for layer in range(dims.n_layers):
        for site in range(len(LINEAR_INPUTS)):
            if samples[layer][site]:
                table[:, layer, site] = torch.quantile(torch.cat(samples[layer][site]), levels)
    return table


def _running_entries(x: Tensor, layer: int, site: int, dims, head_mask, mlp_mask) -> Tensor:
    """|x| over the entries that a mask has not removed for good: [B, T, d_in] -> [n]."""
    if LINEAR_INPUTS[site] == "W_out" and mlp_mask is not None:
        x = x[..., mlp_mask[layer] != 0]  # [B, T, d_kept]
    if LINEAR_INPUTS[site] == "W_O" and head_mask is not None:
        alive = head_mask[layer] != 0  # [H]
        groups = alive.view(dims.n_kv_heads, -1).any(-1)  # [K]: the groups that were computed
        heads = alive.view(dims.n_kv_heads, -1)[groups].reshape(-1)  # [H'] of the computed heads
        x = x.view(*x.shape[:-1], -1, dims.d_head)[..., heads, :]  # [B, T, H', D] -> [B, T, alive, D]
    return x.abs().flatten().float()


def _sample(values: Tensor, gen: torch.Generator) -> Tensor:
    if values.numel() <= SAMPLES_PER_CHUNK:
        return values
    return values[torch.randint(values.numel(), (SAMPLES_PER_CHUNK,), generator=gen)]


def thresholds_from_quantiles(quantiles: Tensor, fraction: float) -> ActivationThresholds:
    """Thresholds zeroing ``fraction`` of every input, read off a quantile table (linear between levels).

    Args:
        quantiles: [levels, n_layers, 4] from :func:`input_quantiles` (levels evenly spaced over [0, 1]).
        fraction: share of each input to zero, in [0, 1); 0 gives all-zero thresholds (nothing zeroed).
    """
    fraction = check_fraction("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if not isinstance(quantiles, Tensor) or quantiles.dim() != 3 or quantiles.shape[2] != len(LINEAR_INPUTS) \
            or quantiles.shape[0] < 2:
        raise ValueError(f"quantiles must be a [levels >= 2, n_layers, {len(LINEAR_INPUTS)}] tensor")
    if fraction == 0:
        return ActivationThresholds(0.0, torch.zeros(quantiles.shape[1:]))
    position = fraction * (quantiles.shape[0] - 1)
    low = int(position)
    weight = position - low
    high = min(low + 1, quantiles.shape[0] - 1)
    thresholds = (1 - weight) * quantiles[low] + weight * quantiles[high]  # [n_layers, 4]
    return ActivationThresholds(fraction, thresholds.float())


def calibrate_activation_thresholds(model: UnrolledModel, input_ids: Tensor, fraction: float, *, skip_layers=None,
                                    head_mask: Tensor | None = None, mlp_mask: Tensor | None = None,
                                    progress: bool = False) -> ActivationThresholds:
    """Thresholds that zero ``fraction`` of the input of each matrix of each layer on this text.

    Args:
        model: the unrolled model.
        input_ids: [B, T] calibration tokens.
        fraction: share of each input to zero, in [0, 1).
        skip_layers, head_mask, mlp_mask: the other knobs it will run with (see :func:`input_quantiles`).
        progress: show a progress bar.
    """
    fraction = check_fraction("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    table = input_quantiles(model, input_ids, skip_layers=skip_layers, head_mask=head_mask, mlp_mask=mlp_mask,
                            progress=progress)
    return thresholds_from_quantiles(table, fraction)


def save_quantiles(path, table: Tensor, model: UnrolledModel, text: str = CALIBRATION_TEXT) -> None:
    """Store a quantile table with the sizes of the model it belongs to (safetensors)."""
    dims = model.dims
    save_file({"quantiles": table.contiguous()}, str(path),
              metadata={"kind": "activation_quantiles", "n_layers": str(dims.n_layers), "d_model": str(dims.d_model),
                        "d_mlp": str(dims.d_mlp), "calibration_text": text})


def load_quantiles(path, model: UnrolledModel) -> Tensor:
    """A quantile table saved by :func:`save_quantiles`, checked against ``model`` [levels, n_layers, 4]."""
    tensors, meta = read_safetensors(path, "activation_quantiles")
    table = tensors.get("quantiles")
    dims = model.dims
    sizes = {"n_layers": dims.n_layers, "d_model": dims.d_model, "d_mlp": dims.d_mlp}
    if table is None or set(tensors) != {"quantiles"} or table.dim() != 3 \
            or tuple(table.shape[1:]) != (dims.n_layers, len(LINEAR_INPUTS)):
        raise ValueError(f"{path} must hold one tensor 'quantiles' [levels, {dims.n_layers}, {len(LINEAR_INPUTS)}]")
    if any(meta.get(k) != str(v) for k, v in sizes.items()):
        raise ValueError(f"{path} was calibrated for a model of other sizes ({meta}), not this one ({sizes})")
    if bool((table < 0).any()):
        raise ValueError(f"{path} holds negative magnitudes: the file is damaged")
    return table.float()


def model_quantiles(model: UnrolledModel, model_name: str | None, tokenizer, *, progress: bool = True) -> Tensor:
    """The quantile table for this model: shipped for smollm2-135m, else calibrated now on the shipped text.

    Calibrating reads :data:`CALIBRATION_TOKENS` tokens of the Python-docs calibration text (never a
    held-out one) in chunks, with a progress bar; it takes a few seconds for a small model.
    """
    shipped = activation_quantiles_path()
    if is_smollm2(model_name) and shipped.exists():
        return load_quantiles(shipped, model)
    if tokenizer is None:
        raise ValueError("activation sparsity by fraction needs thresholds calibrated on text: pass a tokenizer "
                         "(or calibrate_activation_thresholds(model, ids, fraction) and pass its result)")
    ids = eval_ids(tokenizer, CALIBRATION_TEXT, CALIBRATION_TOKENS)  # [1, T]
    return input_quantiles(model, ids, progress=progress)
