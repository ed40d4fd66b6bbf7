"""Measuring early exit on a text: a controller's agreement, cost and wall time, and the budget's quality curve.

(:mod:`anee_lite.core.metrics` has the pure functions on logits this uses; choosing a
threshold, by replay, is :mod:`anee_lite.adaptive.calibration`.)

The text is teacher-forced: each chunk is decoded token by token with a KV cache, once at full
depth and once with the controller, the two steps interleaved so that both see the same machine
load. Decoding one token at a time is where early exit saves time: a token that stops at layer 12
skips the other layers' weights, while in one batched forward every layer runs for some token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..budget import budget_table
from ..config import DEFAULT_EXIT_BUDGET_THRESHOLD, DEFAULT_MIN_LAYERS
from ..core.cache import CONTROLLER_KV_FILL, check_kv_fill
from ..core.metrics import mean_kl, next_token_nll, perplexity, top1_agreement
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_int
from ..cost import bytes_fraction, cost_fraction, early_exit_cost
from ..io.assets import SMOLLM2_EXIT_LAYERS, is_smollm2, lens_path, probe_path
from ..lens import LogitLens, TunedLens
from .calibration import check_target_agreement, text_chunks
from .controllers import ExitController, controller_class, make_controller
from .controllers.base import allowed_exit_layers
from .guarantee import check_delta
from .probe import ExitProbe
from .real_calibration import SPEED_CHECK_TOKENS, calibrate_by_decoding, decode_teacher_forced

LENS_CHOICES = ("auto", "logit", "tuned")
# Calibration tokens by default: at agreement 0.9 the Clopper-Pearson bound (confidence 0.9) then lies
# about 0.01 below the measured rate; on 192 tokens it lay 0.03-0.04 below, which shut exit off at target 0.9.
CALIBRATION_TOKENS = 2048


def load_lens(model: UnrolledModel, model_name: str | None, lens: str = "auto"):
    """The lens and the exit layers to use: the shipped tuned lens for smollm2-135m, else the logit lens.

    Returns:
        (lens, exit_layers_allowed or None for every layer).
    """
    if lens not in LENS_CHOICES:
        raise ValueError(f"lens must be one of {list(LENS_CHOICES)}, got {lens!r}")
    shipped = is_smollm2(model_name) and lens_path().exists()
    if lens == "tuned" and not shipped:
        raise ValueError(f"lens='tuned' needs a trained tuned lens; one ships only for smollm2-135m, "
                         f"not {model_name!r}")
    if lens == "logit" or not shipped:
        return LogitLens(model), (list(SMOLLM2_EXIT_LAYERS) if shipped else None)
    return TunedLens.load(model, lens_path()), list(SMOLLM2_EXIT_LAYERS)


def build_controller(model: UnrolledModel, model_name: str | None, name: str, *, lens: str = "auto",
                     threshold: float | None = None, exit_layers: list[int] | None = None,
                     **kwargs) -> ExitController:
    """A controller by name with the shipped lens/probe when they fit the model.

    ``exit_layers``: where tokens may stop (None: the shipped lens's layers for smollm2-135m, else
    every layer); with the shipped lens or probe, a subset of their layers. Fewer exit layers mean
    fewer checks per token, and fewer chances to stop.
    """
    if model_name is not None and not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str or None, got {type(model_name).__name__}")
    cls = controller_class(name)
    lens_obj, allowed = load_lens(model, model_name, lens)
    if exit_layers is not None:
        chosen = allowed_exit_layers(exit_layers, model.dims.n_layers)
        if allowed is not None and not set(chosen) <= set(allowed):
            raise ValueError(f"exit_layers must be a subset of the layers the shipped lens and probe were trained "
                             f"at {allowed}, got {sorted(set(chosen) - set(allowed))} outside them")
        allowed = chosen
    probe = None
    if cls.needs_probe:
        if not (is_smollm2(model_name) and probe_path().exists()):
            raise ValueError(f"the {name!r} controller needs a trained exit probe; one ships only for "
                             f"smollm2-135m, not {model_name!r} (train one with anee_lite.adaptive.probe.train_probe)")
        probe = ExitProbe.load(probe_path(), model)
    return make_controller(name, lens_obj, threshold, probe=probe, exit_layers_allowed=allowed, **kwargs)


def _perplexity(logits: Tensor, chunks: list[Tensor]) -> float:
    """exp(mean NLL of each next token inside its chunk); ``logits`` [N, V] in chunk order."""
    nll, start = [], 0
    for ids in chunks:
        T = ids.shape[1]
        nll.append(next_token_nll(logits[None, start:start + T].float(), ids)[0])  # [T-1]
        start += T
    return float(torch.cat(nll).mean().exp())


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured (all fractions against the full model on the same tokens)."""

    controller: str
    lens: str
    exit_layers_allowed: list[int]
    threshold: float
    tokens: int
    agreement: float  # top-1 agreement with the full model
    cost_fraction: float  # cost-model FLOPs, every check and K/V propagation included
    mean_layers_fraction: float
    wall_time_ratio: float  # measured decoding time with the controller / at full depth
    kl: float  # mean KL(full || controller) in nats
    perplexity: float
    perplexity_full: float
    lens_checks_per_token: float
    probe_checks_per_token: float
    kv_propagated: int
    wall_seconds: float
    wall_seconds_full: float
    calibration: dict | None = None
    exits: list[int] = field(default_factory=list, repr=False)
    bytes_fraction: float = 1.0  # cost-model memory traffic (weights, KV cache, checks): what batch-1 decoding pays
    kv_fill: str = CONTROLLER_KV_FILL  # how exited tokens' deeper keys/values were filled
    kv_caught_up: int = 0  # (token, layer) blocks run in full past an exit (kv_fill="catch_up")

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(model: UnrolledModel, tokenizer, text: str, controller: ExitController | str, *,
             model_name: str | None = None, calibration_text: str | None = None, target_agreement: float = 0.9,
             max_tokens: int = 512, chunk: int | None = None, lens: str = "auto",
             delta: float = 0.1, calibration_tokens: int = CALIBRATION_TOKENS,
             kv_fill: str = CONTROLLER_KV_FILL, speed_check_tokens: int = SPEED_CHECK_TOKENS) -> EvaluationResult:
    """Teacher-force ``text`` through the controller and the full model; compare them.

    Args:
        model, tokenizer: the unrolled model and its tokenizer.
        text: the evaluation text (non-empty).
        controller: an :class:`ExitController`, or a registered controller's name.
        model_name: the model's name, to find shipped lens/probe (used when ``controller`` is a name).
        calibration_text: if given, the threshold is first calibrated on it by real decoding
            (:func:`~anee_lite.adaptive.real_calibration.calibrate_by_decoding`): the cheapest
            candidate whose agreement's lower confidence bound reaches ``target_agreement``.
        target_agreement: in (0, 1].
        max_tokens: evaluate the first this-many tokens of ``text`` (>= 2).
        chunk: tokens per teacher-forced chunk (each starts from an empty context); default
            256, or the context window if that is shorter.
        lens: "auto", "logit" or "tuned" (used when ``controller`` is a name).
        delta: the calibration's allowed error probability, in (0, 1) (confidence ``1 - delta``).
        calibration_tokens: calibrate on the first this-many tokens of ``calibration_text`` (>= 2;
            fewer if it is shorter: the result says how many were used). The bound tightens with the
            square root of the tokens: on a few hundred it lies so far below the measured agreement
            that no threshold that exits passes.
        kv_fill: how exited tokens' deeper keys/values are filled, in calibration and evaluation alike:
            ``"catch_up"`` (default: the skipped layers run in full beside a later token, FREE: only the
            exiting tokens can disagree; no FLOPs saved) or ``"propagate"`` (from frozen residuals, CALM:
            saves FLOPs, but the later tokens drift and the promise may not hold on new text).
        speed_check_tokens: with ``calibration_text``, decode this many calibration tokens at batch 1 with the
            calibrated threshold and at full depth, and switch exit off if it is not faster on this machine
            (:func:`~anee_lite.adaptive.real_calibration.exit_that_pays`; the result's ``calibration`` says what was
            measured). 0: keep the cost model's choice whatever it costs in time.
    """
    _check_evaluate_inputs(model, tokenizer, text, controller, model_name, calibration_text)
    if lens not in LENS_CHOICES:  # checked even when controller brings its own lens: a typo is not a no-op
        raise ValueError(f"lens must be one of {list(LENS_CHOICES)}, got {lens!r}")
    target = check_target_agreement(target_agreement)
    delta = check_delta(delta)  # even without calibration_text: a nonsense delta is a mistake, not a no-op
    max_tokens = check_int("max_tokens", max_tokens, low=2)
    calibration_tokens = check_int("calibration_tokens", calibration_tokens, low=2)
    kv_fill = check_kv_fill(kv_fill)
    speed_check_tokens = check_int("speed_check_tokens", speed_check_tokens, low=0)
    chunk = min(256, model.dims.n_ctx) if chunk is None else check_int("chunk", chunk, low=2)
    if chunk > model.dims.n_ctx:
        raise ValueError(f"chunk must be at most the model's context window ({model.dims.n_ctx} tokens), got {chunk}")
    if isinstance(controller, str):
        controller = build_controller(model, model_name, controller, lens=lens)
    chunks = text_chunks(tokenizer, text, max_tokens=max_tokens, chunk=chunk)
    calibration = None
    if calibration_text is not None:
        cal_chunks = text_chunks(tokenizer, calibration_text, max_tokens=calibration_tokens, chunk=chunk)
        calibration = calibrate_by_decoding(model, cal_chunks, controller, target, delta=delta, kv_fill=kv_fill,
                                            speed_check_tokens=speed_check_tokens).summary()
    run = decode_teacher_forced(model, chunks, controller, kv_fill)
    spent, full = early_exit_cost(model.dims, run["exits"], run["positions"], run["chunk_ids"], controller.charges,
                                  run["extra_lens_checks"], controller.extra_check_translator_macs(), kv_fill)
    charges = [controller.charges(L) for L in run["exits"].tolist()]
    n = model.dims.n_layers
    return EvaluationResult(
        controller=controller.name,
        lens=controller.lens.kind,
        exit_layers_allowed=list(controller.exit_layers_allowed),
        threshold=controller.threshold,
        tokens=int(run["exits"].numel()),
        agreement=top1_agreement(run["logits"], run["full_logits"]),
        cost_fraction=cost_fraction(spent, full),
        mean_layers_fraction=float(run["exits"].float().mean()) / n,
        wall_time_ratio=run["seconds"] / run["full_seconds"],
        kl=mean_kl(run["logits"].float(), run["full_logits"].float()),
        perplexity=_perplexity(run["logits"], chunks),
        perplexity_full=_perplexity(run["full_logits"], chunks),
        lens_checks_per_token=(sum(c["lens_checks"] for c in charges) + int(run["extra_lens_checks"].sum()))
        / len(charges),
        probe_checks_per_token=sum(c["probe_checks"] for c in charges) / len(charges),
        kv_propagated=run["kv_propagated"],
        wall_seconds=run["seconds"],
        wall_seconds_full=run["full_seconds"],
        calibration=calibration,
        exits=run["exits"].tolist(),
        bytes_fraction=bytes_fraction(spent, full),
        kv_fill=kv_fill,
        kv_caught_up=run["kv_caught_up"],
    )


def _check_evaluate_inputs(model, tokenizer, text, controller, model_name, calibration_text) -> None:
    """Type checks of :func:`evaluate`'s arguments, each naming the parameter and what it accepts."""
    check_unrolled(model)
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a HuggingFace tokenizer (callable on a string), got {type(tokenizer).__name__}")
    for name, value, optional in (("text", text, False), ("calibration_text", calibration_text, True)):
        if isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{name} must be a str, got bytes: decode it first, e.g. {name}.decode('utf-8')")
        if not (isinstance(value, str) or (optional and value is None)):
            raise TypeError(f"{name} must be a str{' or None' if optional else ''}, got {type(value).__name__}")
    if not isinstance(controller, (ExitController, str)):
        raise TypeError(f"controller must be an ExitController or a controller name such as 'confidence', "
                        f"got {type(controller).__name__}")
    if model_name is not None and not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str or None, got {type(model_name).__name__}")


def format_result(r: EvaluationResult) -> str:
    """A small table of one evaluation."""
    about = f"{r.controller} ({r.lens} lens, exits at {_layers(r.exit_layers_allowed)}, kv_fill={r.kv_fill})"
    rows = [("controller", about),
            ("threshold", f"{r.threshold:.4g}"), ("tokens", str(r.tokens)),
            ("top-1 agreement", f"{r.agreement:.3f}"), ("cost fraction", f"{r.cost_fraction:.3f}"),
            ("bytes fraction", f"{r.bytes_fraction:.3f}"),
            ("mean layers fraction", f"{r.mean_layers_fraction:.3f}"),
            ("wall-time ratio", f"{r.wall_time_ratio:.3f}"), ("KL (nats)", f"{r.kl:.3f}"),
            ("perplexity", f"{r.perplexity:.2f} (full model {r.perplexity_full:.2f})"),
            ("checks per token", f"{r.lens_checks_per_token:.2f} lens, {r.probe_checks_per_token:.2f} probe")]
    if r.calibration:
        c = r.calibration
        rows.append(("calibration", f"target {c['target']:.2f}: agreement {c['agreement']:.3f} on {c['tokens']} tokens "
                                    f"(worth {c['effective_tokens']:.0f} independent ones) by real decoding, "
                                    f"lower bound {c['lower_bound']:.3f} at confidence "
                                    f"{1 - c['delta']:.2f}, cost {c['cost_fraction']:.3f}, bytes {c.get('bytes_fraction', 1.0):.3f}"
                                    + ("" if c["met"] else " (target not guaranteed: the safest candidate)")))
        speed = c.get("speed_check")
        if speed:
            rows.append(("speed check", f"threshold {speed['threshold']:.4g} took {speed['time_ratio']:.3f}x the full "
                                        f"model's time on {speed['tokens']} calibration tokens: "
                                        + ("exit switched off (it did not pay)" if speed["switched_off"] else "kept")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _layers(layers: list[int]) -> str:
    if len(layers) > 8 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))


def finite_or_none(x: float):
    """JSON has no NaN/inf."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


@torch.no_grad()
def quality_vs_budget(model, input_ids: Tensor, budgets, min_layers: int = DEFAULT_MIN_LAYERS,
                      exit_budget_threshold: float = DEFAULT_EXIT_BUDGET_THRESHOLD) -> list[dict]:
    """Top-1 agreement with the full model, perplexity and KL for each energy budget.

    The budget makes every token run the same number of layers, so the logits under a budget
    equal the logit lens after that many layers: one full forward serves every budget.

    Args:
        model: an :class:`anee_lite.ANEEWrapper` or the :class:`UnrolledModel` inside it.
        input_ids: [1, T] token ids of the text.
        budgets: the energy budgets to evaluate, each in [0, 1].
        min_layers: layers that always run.
        exit_budget_threshold: the seed's exit threshold.

    Returns:
        One dict per budget: ``energy_budget``, ``layers_executed``, ``n_layers``,
        ``top1_agreement``, ``perplexity``, ``mean_kl`` and the full model's ``full_perplexity``.
    """
    unrolled = model if isinstance(model, UnrolledModel) else getattr(model, "model", None)
    if not isinstance(unrolled, UnrolledModel):
        raise TypeError(f"model must be an ANEEWrapper or an UnrolledModel, got {type(model).__name__}")
    n_layers = unrolled.dims.n_layers
    table = budget_table(n_layers, budgets, min_layers, exit_budget_threshold)  # every budget checked first
    if not table:
        raise ValueError("budgets must hold at least one energy budget in [0, 1], got an empty list")
    budgets, depths = [r["energy_budget"] for r in table], [r["layers_executed"] for r in table]
    full = unrolled.forward(input_ids, return_resid=True)
    resid = full.resid_stack()  # [n_layers + 1, 1, T, d_model]
    full_perplexity = perplexity(full.logits, input_ids)
    by_depth: dict[int, dict] = {}  # several budgets buy the same depth: unembed each depth once
    rows = []
    for budget, n in zip(budgets, depths):
        if n not in by_depth:
            logits = full.logits if n == n_layers else unrolled.logits_from_resid(resid[n])  # [1, T, d_vocab]
            by_depth[n] = {
                "top1_agreement": top1_agreement(logits, full.logits),
                "perplexity": perplexity(logits, input_ids),
                "mean_kl": mean_kl(logits, full.logits),
            }
        rows.append({"energy_budget": float(budget), "layers_executed": n, "n_layers": n_layers,
                     **by_depth[n], "full_perplexity": full_perplexity})
    return rows
