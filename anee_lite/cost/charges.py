"""What one token costs: multiply-adds, bytes moved and a rough energy estimate, part by part.

Counting rules (one token, batch 1, decoding with a KV cache):

* Matrix products are counted exactly in multiply-adds (MACs; FLOPs = 2 x MACs), as
  ``torch.utils.flop_counter`` counts them.
* ``qkv_o``: the Q, K, V and output projections of every layer the token runs.
* ``attn_scores``: ``q @ k.T`` and ``pattern @ v`` over ``context_len`` keys, per query head; the
  only part that grows with the context.
* ``mlp``: two matrices for GPT-2 (up, down), three for Llama's SwiGLU (gate, up, down).
* ``norms``: two per layer run, plus the final norm when the token is unembedded. A norm is
  charged ``2 x d_model`` MACs (sum of squares, then the scale); this is a convention,
  elementwise work has no single right count.
* ``lm_head``: the unembedding, ``d_model x d_vocab``; SmolLM2-135M's is as big as 8 of its layers'
  matrices, about a fifth of a decoding step.
* ``kv_propagation``: per (token, layer) K/V entry filled from an exited token's frozen residual
  (see :mod:`anee_lite.cache`): the layer's input norm plus the K and V projections.
* Caught-up layers (``kv_fill="catch_up"``): a layer an exited token runs later, in full, beside a
  later token, is charged like a layer it ran (in ``qkv_o``, ``attn_scores``, ``mlp`` and ``norms``:
  it is the same arithmetic), but its weights are not streamed again: only its keys and values are read.
* ``exit_checks``: a lens check is a final norm plus an unembedding (plus, for a tuned lens, its
  ``d_model x d_model`` translator); a cheap check (a learned probe, a cosine) costs what the
  controller says one evaluation costs (``probe_macs_per_check``); a tuned lens's translator on
  the readout of an exited token is charged here too. A token whose last lens check already
  computed its output logits is not unembedded a second time (``unembed=False``).
* Activation functions, softmax, biases, residual adds and RoPE are elementwise and left out:
  they are O(d) per token against the O(d^2) matrix products.

Bytes moved: in batch-1 decoding every weight of a part that runs is streamed from memory once
per step (fp32: 4 bytes per parameter; the matrices and norm weights, not the biases), plus the KV
cache read by attention and the K/V written. This, not arithmetic, is what limits decoding speed
on a CPU or a GPU. A propagated K/V entry reads the frozen residual and writes K and V; the
layer's weights are already being streamed for the token that triggered the fill.

Energy: ``flops x ENERGY_PER_FLOP_J + bytes x ENERGY_PER_BYTE_J``, Horowitz's 45 nm numbers
(:mod:`anee_lite.cost.constants`: 2.3 pJ per fp32 FLOP, ~0.24 nJ per DRAM byte, against ~10 pJ from a
small on-chip SRAM). Teaching numbers for an old process, not a measurement of any machine; what they
teach is the ratio: moving a byte from DRAM costs about a hundred times more than a FLOP on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor

from ..core.architectures import ModelDims, converter_for
from ..core.cache import check_kv_fill
from ..core.masks import LINEAR_INPUTS
from ..core.validation import check_fraction, check_int
from .constants import BYTES_PER_PARAM, ENERGY_PER_BYTE_J, ENERGY_PER_FLOP_J

NORM_MACS_PER_ELEMENT = 2  # sum of squares, then the scale (a convention, see the module docstring)

MAC_PARTS = ("qkv_o", "attn_scores", "mlp", "norms", "lm_head", "kv_propagation", "exit_checks")


@dataclass
class CostBreakdown:
    """One token's cost, or a sum of tokens'. Every field is in MACs except ``bytes_moved``."""

    qkv_o: float
    attn_scores: float
    mlp: float
    norms: float
    lm_head: float
    kv_propagation: float
    exit_checks: float
    bytes_moved: float

    @property
    def macs(self) -> float:
        """Multiply-adds of all parts."""
        return sum(getattr(self, part) for part in MAC_PARTS)

    @property
    def flops(self) -> float:
        """Floating-point operations: 2 per multiply-add."""
        return 2 * self.macs

    def energy_joules(self, joules_per_flop: float = ENERGY_PER_FLOP_J,
                      joules_per_byte: float = ENERGY_PER_BYTE_J) -> float:
        """Estimated energy: arithmetic plus memory traffic (teaching constants, see the module docstring)."""
        return self.flops * joules_per_flop + self.bytes_moved * joules_per_byte

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        if not isinstance(other, CostBreakdown):
            return NotImplemented
        return CostBreakdown(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __radd__(self, other) -> CostBreakdown:
        if other == 0:  # sum() starts from 0
            return self
        return self.__add__(other)

    def __mul__(self, times: float) -> CostBreakdown:
        """``n * cost``: the cost of n tokens that each cost this much."""
        if isinstance(times, bool) or not isinstance(times, (int, float)):
            return NotImplemented
        return CostBreakdown(**{f.name: getattr(self, f.name) * times for f in fields(self)})

    __rmul__ = __mul__

    def as_dict(self) -> dict:
        """The parts plus ``macs``, ``flops`` and ``energy_joules``."""
        return {**asdict(self), "macs": self.macs, "flops": self.flops, "energy_joules": self.energy_joules()}


def norm_macs(dims: ModelDims) -> int:
    """MACs charged for one norm over the residual stream."""
    return NORM_MACS_PER_ELEMENT * dims.d_model


def matrix_params(dims: ModelDims) -> dict[str, int]:
    """Parameters of each of one layer's four matrices, keyed as ``LINEAR_INPUTS`` (biases left out)."""
    d, q_width, kv_width = dims.d_model, dims.n_heads * dims.d_head, dims.n_kv_heads * dims.d_head
    arch = converter_for(dims.architecture)
    return {
        "W_QKV": d * (q_width + 2 * kv_width),
        "W_O": q_width * d,
        "W_mlp_in": (arch.n_mlp_matrices - 1) * d * dims.d_mlp,  # up (and gate)
        "W_out": dims.d_mlp * d,
    }


def layer_weight_params(dims: ModelDims) -> dict[str, int]:
    """Parameters of one decoder layer by part: ``qkv_o``, ``mlp``, ``norms`` (biases left out)."""
    m = matrix_params(dims)
    return {
        "qkv_o": m["W_QKV"] + m["W_O"],
        "mlp": m["W_mlp_in"] + m["W_out"],
        "norms": 2 * converter_for(dims.architecture).n_norm_vectors * dims.d_model,
    }


def check_kept_inputs(kept_inputs) -> tuple[float, float, float, float] | None:
    """Activation sparsity's kept share of each matrix's input: one number for all four, or one each."""
    if kept_inputs is None:
        return None
    if isinstance(kept_inputs, (list, tuple)):
        if len(kept_inputs) != len(LINEAR_INPUTS):
            raise ValueError(f"kept_inputs must be one number or {len(LINEAR_INPUTS)} (for {LINEAR_INPUTS}), "
                             f"got {len(kept_inputs)}")
        return tuple(check_fraction("kept_inputs", k) for k in kept_inputs)
    return (check_fraction("kept_inputs", kept_inputs),) * len(LINEAR_INPUTS)


def token_cost(dims: ModelDims, *, layers_run: int, context_len: int, lens_checks: int = 0,
               lens_translator_macs: int = 0, probe_checks: int = 0, probe_macs_per_check: int = 0,
               kv_propagated: float = 0, readout_translator_macs: int = 0, unembed: bool = True,
               kept_inputs: float | tuple[float, ...] | None = None, layers_caught_up: float = 0) -> CostBreakdown:
    """The cost of one token in batch-1 decoding: every charge of a token is assembled here.

    Args:
        dims: the model's sizes (``UnrolledModel.dims``).
        layers_run: decoder layers the token runs, 0..n_layers.
        context_len: keys it attends over, itself included (>= 1).
        lens_checks: lens evaluations (final norm + unembedding each) made to decide its exit.
        lens_translator_macs: tuned-lens translator MACs of those checks, summed over them.
        probe_checks: cheap exit-check evaluations (a learned probe, a cosine), one per decision.
        probe_macs_per_check: MACs of one such evaluation (the controller says what it computes).
        kv_propagated: (token, layer) K/V entries charged to it (filled from frozen residuals).
        readout_translator_macs: a tuned lens's translator applied to its final residual before unembedding.
        unembed: whether its output goes through the final norm and the unembedding; False when it
            reuses the logits its last lens check already computed (that check is in ``lens_checks``).
        kept_inputs: activation sparsity: the mean share of each matrix's input entries kept, one
            number for all four matrices of a layer or one per ``LINEAR_INPUTS`` entry (None: all).
            A zero input entry's weight row is neither multiplied nor streamed (what reading only the
            kept rows needs; the CPU forward does so from ``ROW_SKIP_MIN_SPARSITY`` on, and below it
            multiplies the masked input densely because that is faster there).
        layers_caught_up: (token, layer) blocks run in full past an exit, beside a token that streamed
            their weights (``kv_fill="catch_up"``), charged to this token: its own skipped layers
            (:func:`early_exit_cost`) or the earlier tokens' its step caught up (:func:`generation_report`;
            their keys are read at this token's context length). Fractional for a share of a batch's.
    """
    layers_run = check_int("layers_run", layers_run, low=0, high=dims.n_layers)
    if isinstance(layers_caught_up, bool) or not isinstance(layers_caught_up, (int, float)) \
            or not 0 <= layers_caught_up < float("inf"):
        raise ValueError(f"layers_caught_up must be a finite number >= 0, got {layers_caught_up!r}")
    context_len = check_int("context_len", context_len, low=1)
    lens_checks = check_int("lens_checks", lens_checks, low=0)
    lens_translator_macs = check_int("lens_translator_macs", lens_translator_macs, low=0)
    probe_checks = check_int("probe_checks", probe_checks, low=0)
    probe_macs_per_check = check_int("probe_macs_per_check", probe_macs_per_check, low=0)
    readout_translator_macs = check_int("readout_translator_macs", readout_translator_macs, low=0)
    if not kv_propagated >= 0:
        raise ValueError(f"kv_propagated must be >= 0, got {kv_propagated}")
    kept_inputs = check_kept_inputs(kept_inputs)
    unread = dict.fromkeys(LINEAR_INPUTS, 0.0)  # weights per layer whose input entry is zero: not read
    if kept_inputs is not None:
        unread = {m: (1 - k) * n for (m, n), k in zip(matrix_params(dims).items(), kept_inputs)}
    unread_attn, unread_mlp = unread["W_QKV"] + unread["W_O"], unread["W_mlp_in"] + unread["W_out"]
    d, V = dims.d_model, dims.d_vocab
    q_width, kv_width = dims.n_heads * dims.d_head, dims.n_kv_heads * dims.d_head
    params = layer_weight_params(dims)
    norm = norm_macs(dims)
    lens_macs = norm + d * V  # final norm + unembedding
    translator_macs = lens_translator_macs + readout_translator_macs  # [d, d] matrices, weights streamed once
    probe_macs = probe_checks * probe_macs_per_check

    kv_bytes = 2 * kv_width * context_len * BYTES_PER_PARAM  # K and V read by attention (its own included)
    per_layer_bytes = (sum(params.values()) - unread_attn - unread_mlp) * BYTES_PER_PARAM + kv_bytes  # weights once
    final_bytes = (d * V + params["norms"] // 2) * BYTES_PER_PARAM if unembed else 0
    propagation_bytes = kv_propagated * (d + 2 * kv_width) * BYTES_PER_PARAM  # read the residual, write K and V
    # a lens check streams W_U and the norm weights; a translator or probe one parameter per MAC
    check_bytes = (lens_checks * (d * V + d) + translator_macs + probe_macs) * BYTES_PER_PARAM
    computed = layers_run + layers_caught_up  # layers whose arithmetic the token does, now or caught up later
    return CostBreakdown(
        qkv_o=computed * (params["qkv_o"] - unread_attn),
        attn_scores=computed * 2 * q_width * context_len,  # q @ k.T and pattern @ v, per query head
        mlp=computed * (params["mlp"] - unread_mlp),
        norms=(2 * computed + int(unembed)) * norm,
        lm_head=d * V if unembed else 0,
        kv_propagation=kv_propagated * (norm + d * 2 * kv_width),
        exit_checks=lens_checks * lens_macs + translator_macs + probe_macs,
        bytes_moved=(layers_run * per_layer_bytes + layers_caught_up * kv_bytes + final_bytes + propagation_bytes
                     + check_bytes),
    )


def _check_per_token(**tensors: Tensor | None) -> None:
    """Each given tensor is [N] integers, all of one length N (zip would drop the tail of a longer one)."""
    n = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            got = f"a {t.dtype} tensor" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{name} must be a 1-d tensor of integers [N], one per token, got {got}")
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-d [N], one entry per token in decoding order, got {list(t.shape)}")
        if n is not None and t.shape[0] != n:
            lengths = {k: v.shape[0] for k, v in tensors.items() if isinstance(v, Tensor)}
            raise ValueError(f"{', '.join(lengths)} must have one entry per token each, got lengths {lengths}")
        n = t.shape[0]


def propagated_per_token(exit_layers: Tensor, chunk_ids: Tensor) -> Tensor:
    """[N] K/V entries each token owes later tokens: up to the deepest later token of its chunk (lazy fill).

    Tokens are in decoding order; a token that stopped after ``e`` layers owes one entry for each
    layer above ``e`` that some later token of its chunk runs (see :mod:`anee_lite.core.cache`).
    Under ``kv_fill="catch_up"`` the same count is the layers it runs later, in full.
    """
    _check_per_token(exit_layers=exit_layers, chunk_ids=chunk_ids)
    out = torch.zeros_like(exit_layers)
    for c in chunk_ids.unique():
        e = exit_layers[chunk_ids == c]  # [T]
        later_max = torch.cat([e.flip(0).cummax(0).values.flip(0)[1:], e.new_zeros(1)])  # max over s > t
        out[chunk_ids == c] = (later_max - e).clamp(min=0)
    return out


def early_exit_cost(dims: ModelDims, exit_layers: Tensor, positions: Tensor, chunk_ids: Tensor,
                    exit_charges: Callable[[int], dict], extra_lens_checks: Tensor | None = None,
                    extra_check_translator_macs: int = 0,
                    kv_fill: str = "propagate") -> tuple[CostBreakdown, CostBreakdown]:
    """Summed cost of decoded tokens under early exit, and of the same tokens at full depth.

    Args:
        exit_layers, positions, chunk_ids: [N] per token, in decoding order (a chunk starts from an
            empty context, so a token at position p attends over p + 1 keys).
        exit_charges: exit layer -> the :func:`token_cost` keyword arguments its exit decision adds
            (checks, translators, whether it is unembedded again), e.g. ``ExitController.charges``.
        extra_lens_checks: [N] lens evaluations a token made beyond what its exit layer says (a
            screened controller's confirmations that did not let it stop); None: none.
        extra_check_translator_macs: translator MACs charged with each of those.
        kv_fill: how the decoding filled exited tokens' deeper keys/values: ``"propagate"`` charges
            K/V projections from frozen residuals, ``"catch_up"`` the skipped layers run in full later.
    """
    _check_per_token(exit_layers=exit_layers, positions=positions, chunk_ids=chunk_ids,
                     extra_lens_checks=extra_lens_checks)
    if not callable(exit_charges):
        raise TypeError(f"exit_charges must be a function exit layer -> token_cost keywords (e.g. controller.charges), "
                        f"got {type(exit_charges).__name__}")
    kv_fill = check_kv_fill(kv_fill)
    kv = propagated_per_token(exit_layers, chunk_ids)
    owed = "layers_caught_up" if kv_fill == "catch_up" else "kv_propagated"  # what each owed entry costs
    charges = {L: exit_charges(L) for L in exit_layers.unique().tolist()}  # a few distinct exits
    extra = [0] * len(positions) if extra_lens_checks is None else extra_lens_checks.tolist()

    def cost(L, p, k, e):
        c = charges[L]
        if e:
            c = {**c, "lens_checks": c.get("lens_checks", 0) + e,
                 "lens_translator_macs": c.get("lens_translator_macs", 0) + e * extra_check_translator_macs}
        return token_cost(dims, layers_run=L, context_len=p + 1, **{owed: k}, **c)

    spent = sum(cost(L, p, k, e) for L, p, k, e in zip(exit_layers.tolist(), positions.tolist(), kv.tolist(), extra))
    full = sum(full_token_cost(dims, p + 1) for p in positions.tolist())
    return spent, full


def full_token_cost(dims: ModelDims, context_len: int) -> CostBreakdown:
    """One token through every layer and the unembedding, with no exit checks."""
    return token_cost(dims, layers_run=dims.n_layers, context_len=context_len)


def cost_fraction(costs: CostBreakdown, full: CostBreakdown) -> float:
    """``costs.flops / full.flops``: the share of the full model's arithmetic that was spent."""
    if full.flops <= 0:
        raise ValueError(f"full must cost some FLOPs, got {full.flops}")
    return costs.flops / full.flops


def sparse_token_cost(dims: ModelDims, *, context_len: int, skipped_layers: int = 0, n_heads: int | None = None,
                      n_kv_heads: int | None = None, d_mlp: int | None = None,
                      kept_inputs: float | tuple[float, ...] | None = None, unembed: bool = True) -> CostBreakdown:
    """One decoding token through a model that runs less: skipped layers, pruned heads and neurons, sparse activations.

    What is charged is what runs: a :func:`anee_lite.sparsity.prune`-d model's smaller matrices and KV
    cache (its sizes are ``n_heads``, ``n_kv_heads``, ``d_mlp`` per layer), and with activation
    sparsity only the weight rows that the kept input entries read (``kept_inputs``).
    Masks in the forward that are not pruned still compute everything (they multiply by zero):
    charge those with :func:`token_cost`.

    Args:
        dims: the full model's sizes.
        context_len: keys each layer attends over (>= 1).
        skipped_layers: layers removed or skipped, 0..n_layers.
        n_heads, n_kv_heads, d_mlp: kept query heads, key/value heads and MLP neurons per layer (None: all).
        kept_inputs: share of each matrix's input entries kept (see :func:`token_cost`; None: all).
        unembed: whether the token goes through the final norm and unembedding.
    """
    skipped_layers = check_int("skipped_layers", skipped_layers, low=0, high=dims.n_layers)
    kept = replace(dims,
                   n_heads=dims.n_heads if n_heads is None else check_int("n_heads", n_heads, low=0, high=dims.n_heads),
                   n_kv_heads=dims.n_kv_heads if n_kv_heads is None else check_int("n_kv_heads", n_kv_heads, low=0,
                                                                                   high=dims.n_kv_heads),
                   d_mlp=dims.d_mlp if d_mlp is None else check_int("d_mlp", d_mlp, low=0, high=dims.d_mlp))
    return token_cost(kept, layers_run=dims.n_layers - skipped_layers, context_len=context_len, unembed=unembed,
                      kept_inputs=kept_inputs)


def bytes_fraction(costs: CostBreakdown, full: CostBreakdown) -> float:
    """``costs.bytes_moved / full.bytes_moved``: the share of the memory traffic (what limits batch-1 decoding)."""
    if full.bytes_moved <= 0:
        raise ValueError(f"full must move some bytes, got {full.bytes_moved}")
    return costs.bytes_moved / full.bytes_moved


def generation_report(result, dims: ModelDims, exit_charges: Callable[[int], dict] | None = None) -> list[dict]:
    """One row per generated token of a :class:`~anee_lite.decoding.GenerationResult`.

    Costs are those of cached decoding: the new token's position only (the prompt's prefill is
    not counted, though row 0's ``wall_seconds`` includes it), plus the K/V entries its step
    propagated (for a ``use_cache=False`` result: what the recomputation propagated). With a batch
    of B rows there are B rows per step (key ``row``), each charged a B-th of the step's
    propagation and the step's whole wall time. ``exit_charges`` (e.g. the controller's
    ``charges``) adds what each token's exit decision cost; without it deciding is free.

    Returns:
        dicts with ``step``, ``row``, ``layers``, ``context_len``, ``flops``, ``flops_fraction``
        (against the full model at the same context), ``energy_joules``, ``wall_seconds``.
    """
    if not all(hasattr(result, a) for a in ("layers_per_token", "kv_propagated_per_step", "step_times")):
        raise TypeError(f"result must be the GenerationResult greedy_generate returned, got {type(result).__name__}")
    if not isinstance(dims, ModelDims):
        raise TypeError(f"dims must be the model's ModelDims (model.dims), got {type(dims).__name__}")
    if exit_charges is not None and not callable(exit_charges):
        raise TypeError(f"exit_charges must be None or a function exit layer -> token_cost keywords "
                        f"(e.g. controller.charges), got {type(exit_charges).__name__}")
    rows = []
    per_step = result.kv_propagated_per_step
    caught_up = getattr(result, "kv_caught_up_per_step", None) or [0] * len(per_step)
    for step, layers in enumerate(result.layers_per_token):
        context_len = result.prompt_length + step  # positions 0 .. prompt_length - 1 + step
        full = full_token_cost(dims, context_len)
        batch = layers.shape[0]
        for b, n in enumerate(layers.tolist()):
            cost = token_cost(dims, layers_run=n, context_len=context_len, kv_propagated=per_step[step] / batch,
                              layers_caught_up=caught_up[step] / batch,
                              **(exit_charges(n) if exit_charges is not None else {}))
            rows.append({
                "step": step,
                "row": b,
                "layers": n,
                "context_len": context_len,
                "flops": cost.flops,
                "flops_fraction": cost_fraction(cost, full),
                "energy_joules": cost.energy_joules(),
                "wall_seconds": result.step_times[step],
            })
    return rows
