"""The virtual accelerator: time and energy of each operation of the unrolled forward on a device profile.

Roofline per operation (Williams, Waterman & Patterson, CACM 2009)::

    seconds = max(flops / achievable FLOP/s, bytes / achievable bandwidth) + overhead
    joules  = flops x J/FLOP + bytes x J/byte + idle watts x seconds

A product over a few rows streams its weights once, yet on a CPU it is slower than a one-row product
(the arithmetic is not hidden behind the reads): its memory term is multiplied by the device's
``memory_slowdown(rows)`` (:attr:`~anee_lite.cost.device_profile.DeviceProfile.few_rows_slowdown`).
``overhead`` is ``dispatches x op_overhead_s + products x matmul_overhead_s``: what an eager
framework pays per operator call (kernel launch, Python dispatch) and per matrix product (CPU
thread fork/join), whatever the size. ``bound`` says which term won: ``"memory"``, ``"compute"``
or ``"overhead"``.

The per-operation FLOPs and bytes come from :mod:`anee_lite.cost.charges` (the same parameter
counts, norm convention and byte rules), split by operation; at fp32, batch 1 and one token per
step they sum exactly to :func:`~anee_lite.cost.charges.token_cost`. Other dtypes scale the
weight bytes (:data:`~anee_lite.cost.devices.BYTES_PER_WEIGHT`); the K/V cache and norm vectors stay
fp32 for fp32 weights and fp16 otherwise. Activations are assumed to stay on chip (true while
they fit the cache; a long prefill at a large batch breaks this and is then under-estimated).

Plans: a generation is a list of :class:`Step` passes. Each pass runs ``layers`` decoder layers
over ``tokens`` new positions of each of ``batch`` rows, streaming the weights once. That covers
the other chapters:

* a static budget: :func:`static_plan` (every token runs the same layers);
* per-token early exit: :func:`plan_from_generation` reads ``GenerationResult.layers_per_token``
  (and the K/V entries propagated, or under catch-up the earlier tokens each pass ran beside its own:
  ``Step.caught_up``) of a real run, and the controller's ``charges`` for its checks;
* sparsity: ``Step.weight_fraction`` is the share of matrix weights kept (bytes and FLOPs of the
  projections, MLP and unembedding scale with it: ideal structured sparsity, no index overhead);
* draft/verify (self-speculative decoding): :func:`draft_verify_plan`: draft steps that run few
  layers and emit nothing, and a verify pass over several positions that emits the accepted ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from ..core.architectures import ModelDims, converter_for
from ..core.cache import catch_up_rows
from ..core.validation import check_fraction, check_int
from .charges import BYTES_PER_PARAM, layer_weight_params, norm_macs, token_cost
from .constants import BYTES_PER_WEIGHT, COMPUTE_DTYPE, PJ
from .device_profile import DeviceProfile, check_dtype
from .profiles import PROFILES

# Framework operator calls of anee-lite's eager forward per operation are each architecture's
# ``eager_dispatches`` (core.architectures: counted with torch.profiler on one decoding step, recounted by
# tests/cost/test_simulator.py); "step" is per pass: embedding lookup, positions, masks, argmax, the new token.
# The forward multiplies by two fused matrices per layer, W_QKV = [W_Q | W_K | W_V] and W_mlp_in = [W_gate | W_in]
# (see core.architectures.base): one matrix-product launch each, charged to q_proj and the first MLP input matrix.


@dataclass(frozen=True)
class Op:
    """One operation of a forward pass: its arithmetic and memory traffic."""

    name: str  # e.g. "layer3.mlp_up", "lm_head"
    kind: str  # "matmul", "attention", "norm" or "other"
    flops: float  # floating-point operations (2 per multiply-add)
    bytes: float  # bytes to/from DRAM: weights streamed, K/V read
    dispatches: int = 0  # framework operator calls it takes (eager PyTorch)
    products: int = 0  # matrix-product kernels it launches
    rows: int = 0  # positions a matrix product multiplies at once (0: not a product over positions)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte (inf when it moves no bytes)."""
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass(frozen=True)
class OpTiming:
    """One operation on one device."""

    name: str
    kind: str
    flops: float
    bytes: float
    intensity: float  # FLOPs per byte
    compute_seconds: float  # flops / achievable FLOP/s
    memory_seconds: float  # bytes / achievable bandwidth
    overhead_seconds: float  # dispatches and launches
    seconds: float  # max(compute, memory) + overhead
    joules: float  # arithmetic + memory + idle power x seconds
    bound: str  # "compute", "memory" or "overhead": the largest of the three terms


KERNELS = ("eager", "fused")


def _dispatches(dims: ModelDims, kernels: str) -> dict:
    """Operator calls per op: eager PyTorch's counts, or one kernel per op (a compiled or fused runtime)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {list(KERNELS)}, got {kernels!r}")
    eager = converter_for(dims.architecture).eager_dispatches  # an unknown architecture is a ValueError
    return eager if kernels == "eager" else {name: 1 for name in eager}


def pass_ops(dims: ModelDims, *, layers_run: int, context_len: int, tokens: int = 1, batch: int = 1,
             dtype: str = "fp32", unembedded: int | None = None, weight_fraction: float = 1.0,
             exit_charges: dict | None = None, kv_propagated: float = 0, kernels: str = "eager",
             caught_up: tuple[int, ...] = ()) -> list[Op]:
    """The operations of one forward pass, from the model's sizes.

    Args:
        dims: the model's sizes (``UnrolledModel.dims``).
        layers_run: decoder layers the pass runs, 0..n_layers.
        context_len: keys the last new position attends over, itself included (>= tokens).
        tokens: new positions per row in this pass (1 = a decoding step, more = prefill or verify).
        batch: rows processed together (the weights are streamed once for all of them).
        dtype: weight dtype, one of ``fp32``, ``fp16``, ``int8``, ``int4``.
        unembedded: positions per row that go through the final norm and unembedding
            (default: all ``tokens``; a prefill keeps only the last, 1).
        weight_fraction: share of matrix weights kept, in (0, 1] (sparsity).
        exit_charges: what deciding the exit added, per pass: :func:`~anee_lite.cost.charges.token_cost`'s
            keyword arguments (``lens_checks``, ``probe_checks``, ``probe_macs_per_check``, translator MACs,
            ``unembed``), e.g. ``ExitController.charges(layers)``; charged exactly as ``token_cost`` does.
        kv_propagated: K/V entries filled from frozen residuals in this pass.
        kernels: ``"eager"`` (anee-lite's PyTorch operator calls, the converter's ``eager_dispatches``) or ``"fused"``
            (one kernel per op, as a compiled runtime such as llama.cpp or TensorRT-LLM launches).
        caught_up: per layer run, earlier positions per row that run it beside the new ones (``kv_fill="catch_up"``,
            :func:`~anee_lite.core.cache.catch_up_rows`): they join the layer's products, in the same weight reads,
            and attend as the positions just before the new ones. Missing entries are 0.

    Returns:
        :class:`Op` list; at fp32, batch 1, one token, its FLOPs and bytes sum to ``token_cost``'s.
    """
    layers_run = check_int("layers_run", layers_run, low=0, high=dims.n_layers)
    tokens = check_int("tokens", tokens, low=1)
    context_len = check_int("context_len", context_len, low=tokens)
    batch = check_int("batch", batch, low=1)
    unembedded = tokens if unembedded is None else check_int("unembedded", unembedded, low=0, high=tokens)
    caught_up = check_caught_up(caught_up, layers_run)
    if tokens + max(caught_up, default=0) > context_len:
        raise ValueError(f"caught_up asks for {max(caught_up)} earlier positions beside {tokens} new ones, but the "
                         f"context holds {context_len} positions")
    weight_fraction = check_weight_fraction(weight_fraction)
    exit_charges = dict(exit_charges or {})
    if exit_charges.pop("unembed", True) is False:  # the output reuses the last lens check's logits
        unembedded = 0
    # The cost model prices the exit decision and the K/V fill (one source of truth for those charges).
    checks = token_cost(dims, layers_run=0, context_len=1, unembed=False, **exit_charges)
    fill = token_cost(dims, layers_run=0, context_len=1, unembed=False, kv_propagated=kv_propagated)
    dtype = check_dtype(dtype)

    d, V = dims.d_model, dims.d_vocab
    q_width, kv_width = dims.n_heads * dims.d_head, dims.n_kv_heads * dims.d_head
    arch = converter_for(dims.architecture)
    n_norm = arch.n_norm_vectors * d  # parameters of one norm
    w_bytes = BYTES_PER_WEIGHT[dtype] * weight_fraction  # per kept parameter of a matrix
    small_bytes = BYTES_PER_PARAM if dtype == "fp32" else 2  # K/V cache and norm vectors (fp16 if not fp32)
    disp = _dispatches(dims, kernels)

    def keys_attended(positions):  # summed over a row's last ``positions`` positions: context_len - positions + 1 ..
        return positions * context_len - positions * (positions - 1) // 2

    def matmul(name, d_in, d_out, n_rows, products=1):
        params = d_in * d_out
        return Op(name, "matmul", 2 * n_rows * params * weight_fraction, params * w_bytes, disp[name.split(".")[-1]],
                  products, n_rows)

    def norm(name, n_rows, key):
        return Op(name, "norm", 2 * n_rows * norm_macs(dims), n_norm * small_bytes, disp[key])

    mlp_names = ["mlp_gate", "mlp_up", "mlp_down"][-arch.n_mlp_matrices:]
    ops = [Op("step", "other", 0.0, 0.0, disp["step"])]
    for layer in range(layers_run):
        p = f"layer{layer}."
        positions = tokens + caught_up[layer]  # per row: the new positions and the ones catching up
        rows = batch * positions  # positions that go through the layer
        ops += [
            norm(p + "attn_norm", rows, "attn_norm"),
            matmul(p + "q_proj", d, q_width, rows),
            matmul(p + "k_proj", d, kv_width, rows, products=0),  # fused with q_proj
            matmul(p + "v_proj", d, kv_width, rows, products=0),
            # q @ k.T and pattern @ v per query head; reads each row's K and V over the context once.
            Op(p + "attention", "attention", 2 * batch * 2 * q_width * keys_attended(positions),
               batch * 2 * kv_width * context_len * small_bytes, disp["attention"], 1),
            matmul(p + "o_proj", q_width, d, rows),
            norm(p + "mlp_norm", rows, "mlp_norm"),
        ]
        for i, name in enumerate(mlp_names):
            d_in, d_out = (dims.d_mlp, d) if name == "mlp_down" else (d, dims.d_mlp)
            fused_in = name == "mlp_up" and i > 0  # [W_gate | W_in]: one product
            ops.append(matmul(p + name, d_in, d_out, rows, products=0 if fused_in else 1))
    if unembedded:
        ops += [norm("final_norm", batch * unembedded, "final_norm"),
                matmul("lm_head", d, V, batch * unembedded)]
    scale = small_bytes / BYTES_PER_PARAM  # the cost model counts fp32; checks move data at the activation dtype
    if checks.exit_checks:  # lens checks re-read the unembedding; probes and translators their weights
        n_lens, n_probe = exit_charges.get("lens_checks", 0), exit_charges.get("probe_checks", 0)
        ops.append(Op("exit_checks", "matmul", batch * checks.flops, checks.bytes_moved * scale,
                      disp["exit_decision"] + n_lens * disp["lens_check"] + n_probe * disp["probe_check"],
                      n_lens + n_probe))
    if any(caught_up):  # joining the lagging tokens to the new ones: concatenations, a mask and positions per group
        groups = sum(now > before for before, now in zip((0, *caught_up), caught_up))
        ops.append(Op("catch_up", "other", 0.0, 0.0, sum(c > 0 for c in caught_up) * disp["catch_up_layer"]
                      + groups * disp["catch_up_call"]))
    if kv_propagated:  # input norm + K and V projections from a frozen residual; weights already streaming
        ops.append(Op("kv_propagation", "matmul", fill.flops, fill.bytes_moved * scale,
                      round(kv_propagated * disp["kv_propagation"]), round(kv_propagated)))
    return ops


def check_caught_up(caught_up, layers_run: int) -> tuple[int, ...]:
    """Per layer run, earlier positions catching up: a tuple of ints >= 0, at most ``layers_run`` long, padded with 0."""
    if not isinstance(caught_up, (tuple, list)):
        raise TypeError(f"caught_up must be a tuple of ints (one per layer run), got {type(caught_up).__name__}")
    if len(caught_up) > layers_run:
        raise ValueError(f"caught_up has {len(caught_up)} entries, more than the {layers_run} layers the pass runs")
    counts = tuple(check_int(f"caught_up[{i}]", c, low=0) for i, c in enumerate(caught_up))
    return counts + (0,) * (layers_run - len(counts))


def check_weight_fraction(weight_fraction) -> float:
    """The share of matrix weights kept, a number in (0, 1]: no weights at all cannot compute anything."""
    weight_fraction = check_fraction("weight_fraction", weight_fraction)
    if weight_fraction == 0:
        raise ValueError("weight_fraction must be in (0, 1], got 0")
    return weight_fraction


def _bound(compute: float, memory: float, overhead: float) -> str:
    """Which of an op's three time terms is the largest (a tie goes to the first named)."""
    return max((("compute", compute), ("memory", memory), ("overhead", overhead)), key=lambda kv: kv[1])[0]


def time_op(op: Op, profile: DeviceProfile, dtype: str = "fp32") -> OpTiming:
    """One operation's roofline time and energy on ``profile`` with weights of ``dtype``."""
    share = profile.attention_efficiency if op.kind == "attention" else profile.rows_share(op.rows)
    compute = op.flops / (profile.flops_per_second(dtype) * share)
    memory = op.bytes / profile.bytes_per_second() * profile.memory_slowdown(op.rows)
    overhead = op.dispatches * profile.op_overhead_s + op.products * profile.matmul_overhead_s
    seconds = max(compute, memory) + overhead
    joules = (op.flops * profile.joules_per_flop[COMPUTE_DTYPE[dtype]] + op.bytes * profile.joules_per_byte
              + profile.idle_watts * seconds)
    bound = _bound(compute, memory, overhead)
    return OpTiming(op.name, op.kind, op.flops, op.bytes, op.intensity, compute, memory, overhead, seconds, joules,
                    bound)


@dataclass(frozen=True)
class Step:
    """One forward pass of a plan. Plug-in point for the exit, sparsity and speculative chapters."""

    layers: int  # decoder layers the pass runs
    tokens: int = 1  # new positions per row (1 = decoding; more = prefill or a verify pass)
    emitted: int = 1  # tokens it adds to the output per row (a draft step: 0; a verify pass: accepted + 1)
    unembedded: int | None = None  # positions per row unembedded (None = all ``tokens``)
    weight_fraction: float = 1.0  # share of matrix weights kept (sparsity masks)
    exit_charges: dict | None = None  # token_cost keyword arguments of the exit decision (controller.charges(L))
    kv_propagated: float = 0  # K/V entries filled from frozen residuals
    caught_up: tuple[int, ...] = ()  # per layer, earlier positions per row run beside the new ones (kv_fill="catch_up")


@dataclass
class SimulationResult:
    """A plan on a device: totals, per generated token, and every operation."""

    device: str
    dtype: str
    batch: int
    context: int  # keys in the cache before the plan's first pass
    steps: int  # forward passes
    tokens_emitted: int  # per row
    seconds: float  # the whole plan
    joules: float
    bytes: float
    flops: float
    memory_bandwidth: float  # achievable bytes/s used
    peak_flops: float  # achievable FLOP/s used (for this dtype)
    weight_bytes: float  # the model's matrices and norms at this dtype (an untied input embedding not counted)
    kv_cache_bytes: float  # keys and values of every layer for every row at the plan's last position
    activation_bytes: float  # the largest pass's live activations: residual, MLP hidden, attention scores, logits
    fits_in_memory: bool  # weights + KV cache + activations <= the device's memory
    ops: list  # OpTiming of every op of the plan, summed by name over the passes

    @property
    def seconds_per_token(self) -> float:
        """Seconds per generated token (a batch of B rows emits B tokens per step)."""
        return self.seconds / (self.tokens_emitted * self.batch)

    @property
    def joules_per_token(self) -> float:
        return self.joules / (self.tokens_emitted * self.batch)

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / (self.tokens_emitted * self.batch)

    @property
    def flops_per_token(self) -> float:
        return self.flops / (self.tokens_emitted * self.batch)

    def bound_shares(self) -> dict:
        """Share of the time spent in ops of each bound."""
        total = sum(o.seconds for o in self.ops) or 1.0
        shares = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
        for o in self.ops:
            shares[o.bound] += o.seconds / total
        return shares

    def as_dict(self) -> dict:
        """JSON-ready: the totals, the per-token figures and the per-op breakdown with its bound."""
        data = {k: v for k, v in asdict(self).items() if k != "ops"}
        data.update(seconds_per_token=self.seconds_per_token, joules_per_token=self.joules_per_token,
                    bytes_per_token=self.bytes_per_token, flops_per_token=self.flops_per_token,
                    tokens_per_second=1 / self.seconds_per_token, bound_shares=self.bound_shares(),
                    ops=[{k: (v if not isinstance(v, float) or math.isfinite(v) else None)  # JSON has no inf
                          for k, v in asdict(o).items()} for o in self.ops])
        return data


def model_weight_bytes(dims: ModelDims, dtype: str) -> float:
    """Bytes the model's weights take at ``dtype`` (matrices and norms; a tied embedding counted once)."""
    params = layer_weight_params(dims)
    matrices = dims.n_layers * (params["qkv_o"] + params["mlp"]) + dims.d_model * dims.d_vocab
    small = BYTES_PER_PARAM if dtype == "fp32" else 2
    return matrices * BYTES_PER_WEIGHT[check_dtype(dtype)] + (dims.n_layers * params["norms"] + dims.d_model) * small


def kv_cache_bytes(dims: ModelDims, *, batch: int, positions: int, dtype: str) -> float:
    """Keys and values of every layer for ``batch`` rows of ``positions`` tokens (fp16 unless fp32 weights)."""
    small = BYTES_PER_PARAM if dtype == "fp32" else 2
    return 2 * dims.n_layers * batch * positions * dims.n_kv_heads * dims.d_head * small


def activation_bytes(dims: ModelDims, *, batch: int, tokens: int, context: int, dtype: str) -> float:
    """What one pass keeps alive at once, roughly: the residual stream, the MLP's hidden (and gate) activations,
    one layer's attention scores over the context, and the logits of every position (fp32)."""
    small = BYTES_PER_PARAM if dtype == "fp32" else 2
    rows = batch * tokens
    per_layer = rows * (2 * dims.d_model + 2 * dims.d_mlp) + batch * dims.n_heads * tokens * context
    return per_layer * small + rows * dims.d_vocab * BYTES_PER_PARAM


def simulate_plan(dims: ModelDims, profile: DeviceProfile, plan: list[Step], *, context: int = 0, batch: int = 1,
                  dtype: str = "fp32", kernels: str = "eager") -> SimulationResult:
    """Run a plan on a device.

    Args:
        dims: the model's sizes.
        profile: the device (:func:`~anee_lite.cost.devices.get_profile`).
        plan: the forward passes, in order (:class:`Step`).
        context: keys already in the cache before the first pass (0 when the plan starts with a prefill).
        batch: rows decoded together.
        dtype: weight dtype.
        kernels: ``"eager"`` or ``"fused"`` (see :func:`pass_ops`).
    """
    if not isinstance(profile, DeviceProfile):
        raise TypeError(f"profile must be a DeviceProfile, got {type(profile).__name__}")
    context = check_int("context", context, low=0)
    batch = check_int("batch", batch, low=1)
    dtype = check_dtype(dtype)
    if not plan:
        raise ValueError("plan must hold at least one Step")
    totals: dict[str, OpTiming] = {}
    emitted = 0
    for step in plan:
        if not isinstance(step, Step):
            raise TypeError(f"plan must hold Step objects, got {type(step).__name__}")
        context += step.tokens
        if context > dims.n_ctx:
            raise ValueError(f"the plan reaches {context} positions (context + the Steps' tokens), more than the "
                             f"model's context window n_ctx={dims.n_ctx}")
        ops = pass_ops(dims, layers_run=step.layers, context_len=context, tokens=step.tokens, batch=batch,
                       dtype=dtype, unembedded=step.unembedded, weight_fraction=step.weight_fraction,
                       exit_charges=step.exit_charges, kv_propagated=step.kv_propagated, kernels=kernels,
                       caught_up=step.caught_up)
        for op in ops:
            t = time_op(op, profile, dtype)
            key = _op_key(t.name)
            totals[key] = t if key not in totals else _add_timings(totals[key], t, key)
        emitted += check_int("Step.emitted", step.emitted, low=0, high=step.tokens)  # at most one per position
    if emitted == 0:
        raise ValueError("the plan emits no token (every Step has emitted=0)")
    ops = list(totals.values())
    weight_bytes = model_weight_bytes(dims, dtype)
    kv_bytes = kv_cache_bytes(dims, batch=batch, positions=context, dtype=dtype)
    act_bytes = max(activation_bytes(dims, batch=batch, tokens=s.tokens, context=context, dtype=dtype) for s in plan)
    return SimulationResult(
        device=profile.name, dtype=dtype, batch=batch, context=context - sum(s.tokens for s in plan),
        steps=len(plan), tokens_emitted=emitted,
        seconds=sum(o.seconds for o in ops), joules=sum(o.joules for o in ops), bytes=sum(o.bytes for o in ops),
        flops=sum(o.flops for o in ops), memory_bandwidth=profile.bytes_per_second(),
        peak_flops=profile.flops_per_second(dtype), weight_bytes=weight_bytes, kv_cache_bytes=kv_bytes,
        activation_bytes=act_bytes, fits_in_memory=weight_bytes + kv_bytes + act_bytes <= profile.memory_bytes,
        ops=ops)


def _op_key(name: str) -> str:
    """Per-layer ops are summed over layers in the breakdown: ``layer3.mlp_up`` -> ``mlp_up``."""
    return name.split(".", 1)[1] if name.startswith("layer") else name


def _add_timings(a: OpTiming, b: OpTiming, name: str) -> OpTiming:
    flops, nbytes = a.flops + b.flops, a.bytes + b.bytes
    compute, memory = a.compute_seconds + b.compute_seconds, a.memory_seconds + b.memory_seconds
    overhead = a.overhead_seconds + b.overhead_seconds
    bound = _bound(compute, memory, overhead)
    return replace(a, name=name, flops=flops, bytes=nbytes, intensity=flops / nbytes if nbytes else float("inf"),
                   compute_seconds=compute, memory_seconds=memory, overhead_seconds=overhead,
                   seconds=a.seconds + b.seconds, joules=a.joules + b.joules, bound=bound)


def static_plan(n_tokens: int, layers: int, *, weight_fraction: float = 1.0) -> list[Step]:
    """``n_tokens`` decoding steps that each run ``layers`` layers (a static budget)."""
    n_tokens = check_int("n_tokens", n_tokens, low=1)
    return [Step(layers=layers, weight_fraction=weight_fraction)] * n_tokens


def prefill_plan(prompt_tokens: int, layers: int) -> list[Step]:
    """One pass over the prompt; only its last position is unembedded (what generation does)."""
    return [Step(layers=layers, tokens=check_int("prompt_tokens", prompt_tokens, low=1), unembedded=1)]


def plan_from_generation(result, *, row: int = 0, include_prefill: bool = False,
                         exit_charges: Callable[[int], dict] | None = None) -> list[Step]:
    """The decoding steps of a real run (:class:`~anee_lite.decoding.GenerationResult`).

    Each step runs the layers its token ran (``layers_per_token``) and is charged its share of the
    K/V entries propagated. Under ``kv_fill="catch_up"`` a step runs as deep as the pass did
    (``depth_per_step``) with the earlier tokens it caught up beside it
    (:func:`~anee_lite.core.cache.catch_up_rows`). Step 0 is the prefill pass; by default it is left out,
    so the plan starts with ``context = prompt_length`` keys cached (pass that as ``simulate_plan``'s ``context``).

    Args:
        result: a GenerationResult with at least one step (two when the prefill is left out).
        row: which batch row's exits to follow.
        include_prefill: start with the prompt's pass (then use ``context=0``).
        exit_charges: exit layer -> what that exit decision cost (``token_cost`` keyword arguments), e.g. the
            controller's ``charges``; without it deciding is free (as in ``generation_report``).
    """
    steps_layers = [int(layers[row]) for layers in result.layers_per_token]
    batch = result.layers_per_token[0].shape[0] if steps_layers else 0
    check_int("row", row, low=0, high=max(batch - 1, 0))
    if sum(result.kv_caught_up_per_step):  # every row's pass ran as deep as its deepest token, earlier tokens beside
        if len(result.depth_per_step) != len(steps_layers):
            raise ValueError("the generation caught exited tokens up but did not record depth_per_step "
                             "(GenerationResult.append's depth): the steps' work cannot be read off it")
        depths = result.depth_per_step
        caught = catch_up_rows(depths, first_tokens=result.prompt_length)
    else:
        depths, caught = steps_layers, [()] * len(steps_layers)
    plan = [Step(layers=depths[i], kv_propagated=result.kv_propagated_per_step[i] / batch, caught_up=caught[i],
                 exit_charges=exit_charges(n) if exit_charges else None) for i, n in enumerate(steps_layers)]
    if not plan:
        raise ValueError("the generation has no steps")
    plan[0] = replace(plan[0], tokens=result.prompt_length, unembedded=1)
    plan = plan if include_prefill else plan[1:]
    if not plan:
        raise ValueError("the generation has only the prefill step; generate 2 or more tokens, "
                         "or pass include_prefill=True")
    return plan


def draft_verify_plan(n_layers: int, *, draft_layers: int, draft_tokens: int, accepted: int, rounds: int = 1,
                      verify_layers: int | None = None) -> list[Step]:
    """Self-speculative decoding: per round, ``draft_tokens`` cheap steps, then one verify pass.

    Args:
        n_layers: the model's depth.
        draft_layers: layers a draft step runs.
        draft_tokens: tokens drafted per round (k).
        accepted: drafted tokens the verifier accepts per round, 0..k (it emits ``accepted + 1``).
        rounds: rounds to simulate.
        verify_layers: layers the verify pass runs (default ``n_layers``; ``n_layers - draft_layers`` when
            it reuses the draft's early-layer states, as LayerSkip does).
    """
    draft_layers = check_int("draft_layers", draft_layers, low=1, high=n_layers)
    draft_tokens = check_int("draft_tokens", draft_tokens, low=1)
    accepted = check_int("accepted", accepted, low=0, high=draft_tokens)
    rounds = check_int("rounds", rounds, low=1)
    verify_layers = n_layers if verify_layers is None else check_int("verify_layers", verify_layers, low=1,
                                                                      high=n_layers)
    one_round = [Step(layers=draft_layers, emitted=0)] * draft_tokens
    one_round.append(Step(layers=verify_layers, tokens=draft_tokens + 1, emitted=accepted + 1))
    return one_round * rounds


DEFAULT_DECODE_CONTEXT = 128  # keys a decoding step attends over unless told: a short chat turn


def decode_context(dims: ModelDims, context: int | None = None) -> int:
    """Keys one decoding step attends over (its own included): ``context`` checked against the model's window,
    or by default :data:`DEFAULT_DECODE_CONTEXT`, or ``n_ctx`` when the window is shorter."""
    if context is None:
        return min(DEFAULT_DECODE_CONTEXT, dims.n_ctx)
    return check_int("context", context, low=1, high=dims.n_ctx)


def _check_model_and_device(dims, profile) -> None:
    if not isinstance(dims, ModelDims):
        raise TypeError(f"dims must be the model's ModelDims (model.dims), got {type(dims).__name__}")
    if not isinstance(profile, DeviceProfile):
        raise TypeError(f"profile must be a DeviceProfile (e.g. get_profile('t4')), got {type(profile).__name__}")


def _layers(dims: ModelDims, layers: int | None) -> int:
    return dims.n_layers if layers is None else check_int("layers", layers, low=0, high=dims.n_layers)


def simulate_decode(dims: ModelDims, profile: DeviceProfile, *, layers: int | None = None, context: int | None = None,
                    batch: int = 1, dtype: str = "fp32", weight_fraction: float = 1.0,
                    kernels: str = "eager") -> SimulationResult:
    """One decoding step attending over ``context`` keys (its own included; see :func:`decode_context`), every
    row running ``layers`` (default all). Every argument is checked, in this order, before anything runs.

    ``SimulationResult.context`` is then ``context - 1``: the keys already cached before the step.
    """
    _check_model_and_device(dims, profile)
    layers = _layers(dims, layers)
    context = decode_context(dims, context)
    check_int("batch", batch, low=1)
    check_dtype(dtype)
    check_weight_fraction(weight_fraction)
    _dispatches(dims, kernels)
    return simulate_plan(dims, profile, [Step(layers=layers, weight_fraction=weight_fraction)],
                         context=context - 1, batch=batch, dtype=dtype, kernels=kernels)


def simulate_prefill(dims: ModelDims, profile: DeviceProfile, *, prompt_tokens: int, layers: int | None = None,
                     batch: int = 1, dtype: str = "fp32", kernels: str = "eager") -> SimulationResult:
    """The prompt's pass; ``seconds`` is the prefill time (``seconds_per_token`` divides by the one token emitted)."""
    _check_model_and_device(dims, profile)
    layers = _layers(dims, layers)
    return simulate_plan(dims, profile, prefill_plan(prompt_tokens, layers), batch=batch, dtype=dtype,
                         kernels=kernels)


def device_table(dims: ModelDims, profiles: dict[str, DeviceProfile] | None = None, context: int = 128) -> str:
    """The README's device table (markdown): each profile's peaks, memory, energies, and ``dims`` decoded on it.

    The last columns simulate full-depth, batch-1 fp16 decoding at ``context`` with eager and fused kernels.
    """
    def num(v: float) -> str:
        return f"{v:.0f}" if v >= 100 else f"{v:.3g}"

    rows = [("| device | fp32 / fp16 / int8 peak (TFLOP/s) | bandwidth (GB/s) | memory (GiB) | cache (MiB) | "
             "pJ/FLOP fp16 | pJ/byte | idle W | SmolLM2 fp16 ms/token (eager / fused) | mJ/token (fused) |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in (PROFILES if profiles is None else profiles).items():
        eager, fused = (simulate_decode(dims, p, context=context, dtype="fp16", kernels=k) for k in ("eager", "fused"))
        peaks = " / ".join(num(p.peak_flops[d] / 1e12) for d in ("fp32", "fp16", "int8"))
        rows.append(f"| `{name}` | {peaks} | {num(p.memory_bandwidth / 1e9)} | {p.memory_bytes / 2**30:g} | "
                    f"{p.cache_bytes / 2**20:g} | {p.joules_per_flop['fp16'] / PJ:.2f} | {p.joules_per_byte / PJ:.0f} | "
                    f"{p.idle_watts:g} | {1e3 * eager.seconds_per_token:.2f} / {1e3 * fused.seconds_per_token:.2f} | "
                    f"{1e3 * fused.joules_per_token:.3f} |")
    return "\n".join(rows)
