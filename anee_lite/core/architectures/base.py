"""What every architecture provides to the shared forward pass, and the one weight vocabulary they share.

The forward loop in :mod:`anee_lite.core.model` is written once. Every architecture's converter turns a
HuggingFace model into the same named weights and supplies the few functions that really differ
(embedding, norm, rotation of queries and keys, MLP activation); the per-layer functions below are
shared. Adding an architecture is one file in this package plus its test: a subclass of
:class:`Architecture` decorated with :func:`~anee_lite.core.architectures.register` (the package imports every
module in it, so nothing else needs an edit); the class attributes listed in :class:`Architecture` tell
pruning and the simulator what they need to know.

**Weight vocabulary** (TransformerLens' names, for every architecture):

* model: ``W_E`` [d_vocab, d_model], ``W_pos`` [n_ctx, d_model] (learned positions; ``None`` when
  positions rotate queries and keys, as in Llama), ``ln_final_w`` / ``ln_final_b``, ``W_U`` [d_model, d_vocab].
* per layer, ``arch.blocks[l]`` (a :class:`LayerWeights`): ``ln1_w, ln1_b, W_Q, b_Q, W_K, b_K, W_V, b_V,
  W_O, b_O, ln2_w, ln2_b, W_gate, b_gate`` (gated MLPs only, else ``None``) ``, W_in, b_in, W_out, b_out``.
  A missing bias or norm shift is ``None``.

**Storage convention**: every matrix is stored ``[in, out]`` so that a layer is ``x @ W + b``; that
includes ``W_U`` ([d_model, d_vocab]: ``logits = normed @ W_U``). Heads are concatenated along the
``out`` (or, for ``W_O``, the ``in``) axis: ``W_Q`` is [d_model, n_heads * d_head], head ``h`` owns
columns ``h * d_head : (h + 1) * d_head``. On CPU a matrix-vector product with the weight stored
[in, out] streams memory about 1.3-2x faster than with PyTorch's [out, in] (measured on SmolLM2).
For speed the forward multiplies by two fused matrices, ``W_QKV = [W_Q | W_K | W_V]`` and ``W_mlp_in``
(``W_in``, or ``[W_gate | W_in]`` when gated); the named matrices are *views* of them, so an in-place
edit such as ``blocks[l].W_Q[:, cols] = 0`` changes what the forward computes. A :class:`LayerWeights`
is frozen: to swap a whole matrix, build a new one with ``dataclasses.replace``.

**Whose memory**: by default the converter copies the weights into this layout and leaves the
HuggingFace model exactly as it was. With ``share_weights=True`` it may instead re-lay the HF model's
linear layers as transposed views of the fused matrices, so that the weights exist once in memory
(the library does this for models it loads itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ModelDims:
    """Sizes of a decoder-only transformer, in TransformerLens' vocabulary."""

    architecture: str  # the registered HF model_type ("gpt2", "llama", "mistral"): which converter built the weights
    d_model: int  # width of the residual stream
    n_heads: int  # query heads per attention layer
    n_kv_heads: int  # key/value heads (< n_heads means grouped-query attention)
    d_head: int  # width of one head
    d_mlp: int  # hidden width of the MLP
    n_layers: int  # decoder blocks
    d_vocab: int  # rows of the embedding, columns of the unembedding
    n_ctx: int  # longest sequence the positions support


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One decoder layer's weights in the shared vocabulary; every matrix [in, out].

    Built from the two fused matrices; ``W_Q, W_K, W_V, b_Q, b_K, b_V, W_gate, b_gate, W_in, b_in``
    are views of them (see the module docstring).
    """

    ln1_w: Tensor  # [d_model] scale of the norm before attention
    ln1_b: Tensor | None  # [d_model] its shift (LayerNorm); None for RMSNorm
    W_QKV: Tensor = field(repr=False)  # [d_model, (H + 2K) * D] = [W_Q | W_K | W_V]: one matmul
    b_QKV: Tensor | None = field(repr=False)  # [(H + 2K) * D]
    W_O: Tensor = field(repr=False)  # [H * D, d_model]: concatenated heads back to the residual stream
    b_O: Tensor | None = field(repr=False)  # [d_model]
    ln2_w: Tensor = field(repr=False)  # [d_model] scale of the norm before the MLP
    ln2_b: Tensor | None = field(repr=False)  # [d_model] or None
    W_mlp_in: Tensor = field(repr=False)  # [d_model, d_mlp] = W_in, or [d_model, 2 * d_mlp] = [W_gate | W_in]
    b_mlp_in: Tensor | None = field(repr=False)
    W_out: Tensor = field(repr=False)  # [d_mlp, d_model]
    b_out: Tensor | None = field(repr=False)  # [d_model]
    qkv_widths: tuple[int, int, int]  # (H * D, K * D, K * D): how W_QKV splits into W_Q, W_K, W_V
    gated: bool  # whether the MLP has a gate (SwiGLU): hidden = act(x @ W_gate) * (x @ W_in)
    W_Q: Tensor = field(init=False, repr=False)  # [d_model, H * D]
    W_K: Tensor = field(init=False, repr=False)  # [d_model, K * D]
    W_V: Tensor = field(init=False, repr=False)  # [d_model, K * D]
    b_Q: Tensor | None = field(init=False, repr=False)
    b_K: Tensor | None = field(init=False, repr=False)
    b_V: Tensor | None = field(init=False, repr=False)
    W_gate: Tensor | None = field(init=False, repr=False)  # [d_model, d_mlp], None without a gate
    b_gate: Tensor | None = field(init=False, repr=False)
    W_in: Tensor = field(init=False, repr=False)  # [d_model, d_mlp]
    b_in: Tensor | None = field(init=False, repr=False)

    def __post_init__(self):
        views = dict(zip(("W_Q", "W_K", "W_V"), self.W_QKV.split(self.qkv_widths, dim=1)))
        views.update(zip(("b_Q", "b_K", "b_V"), _split(self.b_QKV, self.qkv_widths)))
        mlp_widths = [self.W_mlp_in.shape[1] // 2] * 2 if self.gated else [self.W_mlp_in.shape[1]]
        w_mlp, b_mlp = self.W_mlp_in.split(mlp_widths, dim=1), _split(self.b_mlp_in, mlp_widths)
        views.update(W_gate=w_mlp[0] if self.gated else None, b_gate=b_mlp[0] if self.gated else None,
                     W_in=w_mlp[-1], b_in=b_mlp[-1])
        for name, view in views.items():
            object.__setattr__(self, name, view)  # frozen: set once, here

    def named(self) -> dict[str, Tensor | None]:
        """The vocabulary's per-layer weights, in the order a block uses them (fused matrices left out)."""
        names = ("ln1_w", "ln1_b", "W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O", "ln2_w", "ln2_b",
                 "W_gate", "b_gate", "W_in", "b_in", "W_out", "b_out")
        return {name: getattr(self, name) for name in names}


def _split(bias: Tensor | None, widths) -> list[Tensor | None]:
    return [None] * len(widths) if bias is None else list(bias.split(widths))


class Architecture:
    """The per-architecture half of the forward pass, over weights in the shared vocabulary.

    A subclass's ``__init__(hf_model, share_weights=False, device=None)`` fills ``dims`` (from
    :meth:`dims_from_hf`), ``blocks``, ``W_E``, ``W_pos``, ``ln_final_w``, ``ln_final_b``, ``W_U`` and ``eps``
    (using :meth:`take` and :meth:`take_linear`, which copy or share), and it implements :meth:`embed`,
    :meth:`norm` and :meth:`mlp_activation` (and :meth:`position_info` / :meth:`rotate` if positions enter
    attention). Every method is a pure function of its inputs and the weights. Shapes use B = batch,
    T = tokens in this call, d = d_model, H = n_heads, K = n_kv_heads, D = d_head.

    Class attributes every architecture sets (what the rest of the library asks of it):
    ``model_type`` (HuggingFace's ``config.model_type``, the registry key and ``dims.architecture``),
    ``n_mlp_matrices`` and ``n_norm_vectors`` (the cost model), ``norm_centres`` (whether the norm subtracts
    the mean, for :meth:`lens_readout`), ``eager_dispatches`` (framework operator
    calls per operation of one decoding step, for the simulator: the layer's operations, ``step``, an exit
    check (``lens_check`` as the confidence controller makes it, ``probe_check``) and the step's one
    ``exit_decision``, ``kv_propagation`` per entry, and under catch-up ``catch_up_layer`` per layer that
    runs lagging tokens and ``catch_up_call`` per group of them; ``tests/cost/test_simulator.py`` recounts
    them with ``torch.profiler``), and for ``prune()``: ``hf_layers`` (the state-dict prefix of the blocks),
    ``hf_config_keys`` (which config entries hold the layer count, MLP width and head counts) and
    :meth:`slice_layer_tensor`.
    """

    model_type: str
    n_mlp_matrices: int  # weight matrices in one MLP (the cost model counts them)
    n_norm_vectors: int  # learned [d_model] vectors in one norm: scale (and shift)
    norm_centres: bool  # LayerNorm subtracts the mean before scaling, RMSNorm does not
    eager_dispatches: Mapping[str, int]
    hf_layers: str  # e.g. "model.layers": the blocks' prefix in the HF state dict
    hf_config_keys: Mapping[str, str]  # "n_layers", "d_mlp" (and "n_heads", "n_kv_heads", "d_head" if heads prune)
    head_pruning: str | None = None  # why prune() cannot remove heads of this architecture; None: it can

    dims: ModelDims
    blocks: list[LayerWeights]
    W_E: Tensor  # [d_vocab, d]
    W_pos: Tensor | None  # [n_ctx, d] or None
    ln_final_w: Tensor  # [d]
    ln_final_b: Tensor | None  # [d] or None
    W_U: Tensor  # [d, d_vocab]
    eps: float  # the norms' epsilon

    def __init__(self, hf_model, share_weights: bool = False, device=None):
        here = hf_model.get_output_embeddings().weight.device
        self.share_weights = share_weights
        self.device = here if device is None else torch.device(device)
        if share_weights and self.device != here:
            raise ValueError(f"share_weights=True needs the model on device {self.device}, but it is on {here}: "
                             "move it first (hf_model.to(device)) or let the library copy it (share_weights=False)")

    # --- copying or sharing the HF model's tensors ------------------------------------------------------------

    @classmethod
    def dims_from_hf(cls, hf_model) -> ModelDims:
        """The model's sizes, read from its config and weight shapes without converting anything."""
        raise NotImplementedError

    @classmethod
    def slice_layer_tensor(cls, name: str, w: Tensor, heads: list[int] | None, groups: list[int] | None,
                           neurons: Tensor | None, d_head: int) -> Tensor:
        """One HF tensor of a kept layer (``name`` relative to the layer) with removed heads and neurons cut out.

        ``heads`` / ``groups``: the query heads and key/value groups kept (None: all); ``neurons``: the MLP
        hidden units kept (None: all). An architecture whose heads cannot be pruned raises ValueError for heads.
        """
        raise NotImplementedError

    def take(self, t: Tensor | None) -> Tensor | None:
        """A parameter as it is: shared with the HF model, or copied (the HF model untouched)."""
        if t is None:
            return None
        return t.detach() if self.share_weights else t.detach().to(self.device, copy=True)

    def take_linear(self, modules: list) -> Tensor:
        """``nn.Linear`` weights [out_i, in] -> one contiguous [in, sum(out_i)] matrix.

        Copying (default), the modules are not touched. Sharing, they get transposed views of the
        new matrix (they compute the same, and the weights exist once in memory); a model re-laid
        this way before is recognised and its matrix reused, so two wrappers share one copy.
        """
        weights = [m.weight.detach() for m in modules]  # each [out_i, in]
        fused = self._fused(weights, lambda: torch.cat([w.t() for w in weights], dim=1))  # [in, sum(out_i)]
        if self.share_weights:
            columns = fused.split([w.shape[0] for w in weights], dim=1)  # [in, out_i] each
            for m, view in zip(modules, columns):
                if m.weight.data_ptr() != view.data_ptr():
                    m.weight = torch.nn.Parameter(view.t(), requires_grad=m.weight.requires_grad)
        return fused

    def take_bias(self, modules: list) -> Tensor | None:
        """The modules' biases side by side [sum(out_i)], or None if they have none (shared like the weights)."""
        if modules[0].bias is None:
            return None
        biases = [m.bias.detach() for m in modules]
        fused = self._fused(biases, lambda: torch.cat(biases))  # [sum(out_i)]
        if self.share_weights:
            for m, view in zip(modules, fused.split([b.shape[0] for b in biases])):
                if m.bias.data_ptr() != view.data_ptr():
                    m.bias = torch.nn.Parameter(view, requires_grad=m.bias.requires_grad)
        return fused

    def _fused(self, parts: list[Tensor], concatenate) -> Tensor:
        """A contiguous copy of ``concatenate()``, or, when sharing, the matrix the parts already are views of."""
        if self.share_weights:
            existing = _side_by_side(parts)
            if existing is not None:
                return existing
        return concatenate().to(self.device).contiguous()

    def take_embeddings(self, embedding, lm_head) -> tuple[Tensor, Tensor]:
        """``W_E`` [d_vocab, d] and ``W_U`` [d, d_vocab]; a tied pair stays one matrix (W_E = W_U.T)."""
        tied = embedding.weight is lm_head.weight
        W_U = self.take_linear([lm_head])  # [d, d_vocab]
        if not tied:
            return self.take(embedding.weight), W_U
        if self.share_weights:
            embedding.weight = lm_head.weight  # the same Parameter again, so the HF model's tie survives
        return W_U.t(), W_U

    # --- what each architecture defines -----------------------------------------------------------------------

    def embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """[B, T] token ids and positions -> [B, T, d] first residual stream."""
        raise NotImplementedError

    def norm(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """[B, T, d] -> [B, T, d]: the architecture's normalisation with scale ``w`` (and shift ``b``)."""
        raise NotImplementedError

    def mlp_activation(self, pre: Tensor) -> Tensor:
        """``x @ W_mlp_in + b_mlp_in`` [B, T, d_mlp] (or [B, T, 2 d_mlp] when gated) -> hidden [B, T, d_mlp]."""
        raise NotImplementedError

    def position_info(self, positions: Tensor):
        """Whatever :meth:`rotate` needs about positions, computed once per forward, not per layer."""
        return positions

    def rotate(self, x: Tensor, pos_info) -> Tensor:
        """Queries or keys [B, n, T, D] -> the same with positions applied (nothing, for learned positions)."""
        return x

    # --- the shared per-layer functions -------------------------------------------------------------------------

    def attn_qkv(self, layer: int, resid_pre: Tensor, pos_info, *, project=None,
                 groups: list[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """[B, T, d] -> q [B, H', T, D], k and v [B, K', T, D] (normed, projected, rotated).

        ``project(x, W, b)`` multiplies by a weight (default :func:`linear`; activation sparsity passes
        its own). ``groups``: compute only these key/value groups and their query heads (None: all),
        reading just their columns of ``W_QKV``.
        """
        blk = self.blocks[layer]
        x = self.norm(resid_pre, blk.ln1_w, blk.ln1_b)  # [B, T, d]
        project = project or linear
        if groups is None:  # queries and keys side by side: one rotation for both (decoding pays per op)
            D = self.dims.d_head
            H, K = blk.qkv_widths[0] // D, blk.qkv_widths[1] // D
            qk, v = project(x, blk.W_QKV, blk.b_QKV).split((H + K) * D, dim=-1)  # [B, T, (H + K) D], [B, T, K D]
            q, k = self.rotate(split_heads(qk, D), pos_info).split((H, K), dim=1)  # [B, H, T, D], [B, K, T, D]
            return q, k, split_heads(v, D)
        qkv = [project_columns(x, blk.W_QKV, blk.b_QKV, self.group_columns(part, groups), project)
               for part in range(3)]  # [B, T, H' * D], [B, T, K' * D] x 2
        q, k, v = (split_heads(t, self.dims.d_head) for t in qkv)
        return self.rotate(q, pos_info), self.rotate(k, pos_info), v  # [B, H', T, D], [B, K', T, D] x 2

    def attn_kv(self, layer: int, resid: Tensor, pos_info, *, project=None,
                groups: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Keys and values only [B, K', T, D]: what an exited token still owes to deeper layers."""
        blk = self.blocks[layer]
        x = self.norm(resid, blk.ln1_w, blk.ln1_b)  # [B, T, d]
        if groups is None:  # the K and V columns are one block: one product
            kv = project_columns(x, blk.W_QKV, blk.b_QKV, [(blk.qkv_widths[0], blk.W_QKV.shape[1])], project or linear)
            k, v = kv.chunk(2, dim=-1)  # [B, T, 2 K D] -> [B, T, K D] x 2
        else:
            k, v = (project_columns(x, blk.W_QKV, blk.b_QKV, self.group_columns(part, groups), project or linear)
                    for part in (1, 2))  # [B, T, K' * D] each
        return self.rotate(split_heads(k, self.dims.d_head), pos_info), split_heads(v, self.dims.d_head)

    def attn_out(self, layer: int, z: Tensor, *, project=None, groups: list[int] | None = None) -> Tensor:
        """[B, T, H' * D] mixed values (heads side by side) -> [B, T, d] written to the residual stream.

        With ``groups``, ``z`` holds only those groups' heads, which multiply their rows of ``W_O``.
        """
        blk = self.blocks[layer]
        project = project or linear
        if groups is None:
            return project(z, blk.W_O, blk.b_O)  # [B, T, H * D] @ [H * D, d] -> [B, T, d]
        out, start = None, 0
        for rows in self.group_columns(0, groups):  # the kept heads' rows of W_O, a block per run of groups
            width = rows[1] - rows[0]
            part = project(z[..., start:start + width], blk.W_O[rows[0]:rows[1]], None)  # [B, T, width] -> [B, T, d]
            out, start = part if out is None else out + part, start + width
        if out is None:  # no head left: the output projection adds only its bias
            out = z.new_zeros(*z.shape[:-1], blk.W_O.shape[1])  # [B, T, d]
        return out if blk.b_O is None else out + blk.b_O

    def group_columns(self, part: int, groups) -> list[tuple[int, int]]:
        """[start, stop) columns of ``W_QKV`` for ``groups``' queries (part 0), keys (1) or values (2).

        A group's query heads sit side by side, so each run of consecutive groups is one block of
        columns (no copy: a column slice of an [in, out] matrix is a view BLAS reads directly).
        """
        D, K = self.dims.d_head, self.dims.n_kv_heads
        width = (self.dims.n_heads // K if part == 0 else 1) * D  # columns one group owns in this part
        offset = sum(self.blocks[0].qkv_widths[:part])
        spans: list[tuple[int, int]] = []
        for g in groups:
            if spans and spans[-1][1] == offset + g * width:
                spans[-1] = (spans[-1][0], offset + (g + 1) * width)  # extend the run
            else:
                spans.append((offset + g * width, offset + (g + 1) * width))
        return spans

    def mlp_hidden(self, layer: int, resid_mid: Tensor, *, project=None) -> Tensor:
        """[B, T, d] -> [B, T, d_mlp]: the MLP's hidden activations (its input norm included)."""
        blk = self.blocks[layer]
        x = self.norm(resid_mid, blk.ln2_w, blk.ln2_b)  # [B, T, d]
        return self.mlp_activation((project or linear)(x, blk.W_mlp_in, blk.b_mlp_in))  # -> [B, T, d_mlp]

    def mlp_out(self, layer: int, hidden: Tensor, *, project=None) -> Tensor:
        """[B, T, d_mlp] hidden activations -> [B, T, d] written to the residual stream."""
        blk = self.blocks[layer]
        return (project or linear)(hidden, blk.W_out, blk.b_out)  # [B, T, d_mlp] @ [d_mlp, d] -> [B, T, d]

    def final_norm(self, resid: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d]: the norm before the unembedding."""
        return self.norm(resid, self.ln_final_w, self.ln_final_b)

    def unembed(self, normed: Tensor) -> Tensor:
        """[B, T, d] -> [B, T, d_vocab] logits."""
        return linear(normed, self.W_U)  # [B, T, d] @ [d, d_vocab]

    def lens_readout(self, resid: Tensor, targets: Tensor) -> Tensor:
        """The direction along which the logit lens reads one token's logit from a residual.

        With the final norm's scale frozen at ``resid`` (as the lens sees it), the norm and the unembedding
        are linear, so a vector ``c`` added to the residual moves the logit of ``targets`` by
        ``c @ readout``; the residual itself gives ``logit = resid @ readout + ln_final_b @ W_U[:, target]``.

        Args:
            resid: [..., d] final residuals (after the last block that ran).
            targets: [...] token ids, one per residual.

        Returns:
            [..., d] readout directions.
        """
        u = self.W_U[:, targets].movedim(0, -1) * self.ln_final_w  # [d, ...] -> [..., d]: scaled unembedding column
        x = resid
        if self.norm_centres:  # the mean is removed from c, so remove it from the direction instead (same dot product)
            u, x = u - u.mean(-1, keepdim=True), x - x.mean(-1, keepdim=True)
        return u / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()  # [..., d] / [..., 1]: the frozen scale


def _side_by_side(parts: list[Tensor]) -> Tensor | None:
    """The contiguous tensor these parts are consecutive views of, if any (a model shared before).

    Weights [out_i, in] must be transposed column blocks of one [in, sum(out_i)] matrix; biases
    [out_i] consecutive pieces of one [sum(out_i)] vector.
    """
    first, total = parts[0], sum(p.shape[0] for p in parts)
    start, offset = first.storage_offset(), 0
    for p in parts:
        stride = (1, total) if p.dim() == 2 else (1,)
        if (p.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() or p.stride() != stride
                or p.storage_offset() != start + offset):
            return None
        offset += p.shape[0]
    if first.dim() == 1:
        return first.as_strided((total,), (1,), start)  # [sum(out_i)]
    return first.as_strided((first.shape[1], total), (total, 1), start)  # [in, sum(out_i)]


def split_heads(x: Tensor, d_head: int) -> Tensor:
    """[B, T, n * D] -> [B, n, T, D] (n may be 0: a layer whose heads are all switched off)."""
    B, T, width = x.shape
    return x.view(B, T, width // d_head, d_head).transpose(1, 2)  # [B, T, n, D] -> [B, n, T, D]


def project_columns(x: Tensor, w: Tensor, b: Tensor | None, spans: list[tuple[int, int]], project) -> Tensor:
    """[..., in] -> [..., sum of span widths]: ``project`` on each [start, stop) column block of ``w``, side by side."""
    parts = [project(x, w[:, a:z], None if b is None else b[a:z]) for a, z in spans]  # [..., z - a] each
    return torch.cat(parts, dim=-1) if parts else x.new_zeros(*x.shape[:-1], 0)


def linear(x: Tensor, w_in_out: Tensor, bias: Tensor | None = None) -> Tensor:
    """[..., in] @ [in, out] + bias -> [..., out] (F.linear on the transposed view: no copy).

    A few rows (a decoding step at batch 1, perhaps with exited tokens catching up beside it) are
    multiplied split-K: the BLAS runs a product of so few rows on one core, and one core cannot
    stream weights as fast as the machine's memory can deliver them (~14 vs ~21 GB/s on this
    project's 2-core machines). Cutting ``in`` into one slice per torch thread lets every core read
    its own contiguous block of rows; the per-core partial products are then summed (another
    summation order, as any BLAS may choose; float32/64 only, so that no low-precision partial sum is
    rounded twice; CPU only: a GPU runs one product on all its cores). From ``SPLIT_K_MAX_ROWS`` rows
    on the BLAS uses both cores itself.
    """
    parts = torch.get_num_threads()
    d_in, d_out = w_in_out.shape
    n_rows = x.numel() // d_in if d_in else 0
    if (not 1 <= n_rows <= SPLIT_K_MAX_ROWS or parts < 2 or d_in < parts or x.dtype not in _SPLIT_K_DTYPES
            or x.device.type != "cpu"):
        return F.linear(x, w_in_out.t(), bias)
    block = d_in // parts  # rows per core; the d_in % parts left over (an odd, pruned width) are added after
    main, rest = block * parts, None
    if main == d_in and n_rows == 1:  # the decoding step: as few operator calls as possible (views only)
        xs, rows = x.reshape(parts, 1, block), w_in_out.view(parts, block, d_out)  # [parts, 1|block, ...]
    else:
        flat = x.reshape(n_rows, d_in)  # [R, in]
        xs = flat[:, :main].reshape(n_rows, parts, block).transpose(0, 1)  # [R, parts, block] -> [parts, R, block]
        rows = w_in_out[:main].view(parts, block, d_out)  # [parts, block, out]: each core's contiguous block
        if main != d_in:
            rest = flat[:, main:] @ w_in_out[main:]  # [R, in - main] @ [in - main, out] -> [R, out]
    y = torch.bmm(xs, rows).sum(0)  # [parts, R, out] -> [R, out]
    if rest is not None:
        y = y + rest
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], d_out)  # -> [..., out]


# Measured on this project's 2-core machine (SmolLM2's shapes): split-K beat the BLAS's own product up to 32 rows
# (1.8x at 2-3 rows, 1.1x at 32); a prefill of hundreds of rows is left to the BLAS.
SPLIT_K_MAX_ROWS = 32
_SPLIT_K_DTYPES = (torch.float32, torch.float64)


def keep_blocks(w: Tensor, idx: Tensor | list[int], width: int) -> Tensor:
    """Rows of [n * width, ...] grouped in blocks of ``width`` (heads): keep blocks ``idx``."""
    return w.view(-1, width, *w.shape[1:])[idx].reshape(-1, *w.shape[1:])  # [n, width, ...] -> [len(idx) * width, ...]


CONVERTERS: dict[str, type[Architecture]] = {}  # HF config.model_type -> converter, filled by @register

_REQUIRED = ("model_type", "n_mlp_matrices", "n_norm_vectors", "norm_centres", "eager_dispatches", "hf_layers",
             "hf_config_keys")


def register(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator: ``cls`` converts the HuggingFace models whose ``config.model_type`` is ``cls.model_type``."""
    missing = [a for a in _REQUIRED if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"architecture {cls.__name__} must define {missing} (see anee_lite.core.architectures.base)")
    CONVERTERS[cls.model_type] = cls
    return cls


def converter_for(model_type) -> type[Architecture]:
    """The converter registered for ``model_type``; any other is a ValueError listing the supported ones."""
    if model_type not in CONVERTERS:
        raise ValueError(f"model_type {model_type!r} is not supported; supported architectures: {sorted(CONVERTERS)}")
    return CONVERTERS[model_type]
