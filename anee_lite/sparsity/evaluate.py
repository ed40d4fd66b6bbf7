"""Quality against cost for every lever at equal cost points: what the benchmark and notebook 06 report.

For each lever (static early exit, layer skipping, head pruning, neuron pruning, activation
sparsity, and a combination) and each target cost (a fraction of the full model's FLOPs per
decoding token), :func:`plan_levers` picks the setting whose cost-model FLOPs come closest, using
importance scores from calibration text only. :func:`quality` then compares it with the full model
on held-out text (top-1 agreement, perplexity) in one teacher-forced forward, and
:func:`decode_time_ratio` measures decoding time against the full model, runs alternating.

Quality uses the masks of the forward (equal to the pruned model, tested); timing uses what
really runs faster: a :func:`prune`-d model, the skipped layers, and the gathered down projection.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..core.masks import ActivationThresholds
from ..core.metrics import perplexity, top1_agreement
from ..core.model import UnrolledModel
from ..cost import bytes_fraction, cost_fraction, full_token_cost, sparse_token_cost, token_cost
from .calibrate import input_quantiles, thresholds_from_quantiles
from .prune import prune
from .scores import block_influence, head_importance, neuron_importance
from .select import head_mask_from_scores, layers_to_skip, mlp_mask_from_scores

LEVERS = ("static exit", "layer skipping", "head pruning", "neuron pruning", "activation sparsity", "combination")
REACH_TOLERANCE = 0.03  # a lever "reaches" a cost point when its closest setting is within this of it


@dataclass
class Setting:
    """One lever at one setting: the forward's keywords and what it costs per decoding token."""

    lever: str
    label: str  # e.g. "skip 6 layers"
    forward_kwargs: dict  # skip_layers / head_mask / mlp_mask / activation_sparsity / exit_layers
    flops_fraction: float
    bytes_fraction: float
    target: float | None = None  # the cost point it was chosen for
    reached: bool = True


@dataclass
class Scores:
    """Importance scores and thresholds computed once on calibration text."""

    block_influence: Tensor  # [n_layers]
    head_importance: Tensor  # [n_layers, n_heads]
    neuron_importance: Tensor  # [n_layers, d_mlp]
    calibration_ids: Tensor  # [1, T]
    quantiles: dict = field(default_factory=dict)  # (skip, neurons removed) -> input_quantiles table


def compute_scores(model: UnrolledModel, calibration_ids: Tensor) -> Scores:
    """All three importance scores on the calibration tokens [1, T]."""
    return Scores(block_influence(model, calibration_ids), head_importance(model, calibration_ids),
                  neuron_importance(model, calibration_ids), calibration_ids)


def _cost(model, context_len, **kwargs):
    dims = model.dims
    full = full_token_cost(dims, context_len)
    cost = sparse_token_cost(dims, context_len=context_len, **kwargs)
    return cost_fraction(cost, full), bytes_fraction(cost, full)


def _thresholds(model, scores: Scores, fraction, skip=(), mlp_mask=None, removed=0.0) -> ActivationThresholds:
    key = (tuple(skip), round(removed, 4))  # one quantile table per set of other knobs serves every fraction
    if key not in scores.quantiles:
        scores.quantiles[key] = input_quantiles(model, scores.calibration_ids, skip_layers=list(skip),
                                                mlp_mask=mlp_mask)
    return thresholds_from_quantiles(scores.quantiles[key], fraction)


def candidate_settings(model: UnrolledModel, scores: Scores, lever: str, context_len: int) -> list[Setting]:
    """Every setting of one lever on a grid, with its cost fractions (no quality yet)."""
    dims = model.dims
    n, out = dims.n_layers, []
    if lever == "static exit":
        for layers in range(1, n + 1):
            f, b = _cost(model, context_len, skipped_layers=n - layers)  # the layers above the exit do not run
            out.append(Setting(lever, f"exit after {layers} layers", {"exit_layers": layers}, f, b))
    elif lever == "layer skipping":
        for k in range(n):
            skip = layers_to_skip(scores.block_influence, k)
            f, b = _cost(model, context_len, skipped_layers=k)
            out.append(Setting(lever, f"skip {k} layers (lowest Block Influence)", {"skip_layers": skip}, f, b))
    elif lever == "head pruning":
        group = dims.n_heads // dims.n_kv_heads
        for keep in range(1, group + 1):
            mask = head_mask_from_scores(scores.head_importance, dims, keep)
            f, b = _cost(model, context_len, n_heads=keep * dims.n_kv_heads)
            out.append(Setting(lever, f"keep {keep} of {group} heads per kv group", {"head_mask": mask}, f, b))
    elif lever == "neuron pruning":
        for pct in range(0, 100, 5):
            mask = mlp_mask_from_scores(scores.neuron_importance, pct / 100)
            f, b = _cost(model, context_len, d_mlp=int(mask[0].sum()))
            out.append(Setting(lever, f"prune {pct}% of MLP neurons (Wanda)", {"mlp_mask": mask}, f, b))
    elif lever == "activation sparsity":
        for pct in range(0, 100, 5):
            f, b = _cost(model, context_len, kept_inputs=1 - pct / 100)
            out.append(Setting(lever, f"{pct}% activation sparsity", {"_activation": pct / 100}, f, b))
    else:
        raise ValueError(f"lever must be one of {list(LEVERS[:-1])}, got {lever!r}")
    return out


def _materialise(model, scores, setting: Setting) -> Setting:
    """Turn a planned activation fraction into calibrated thresholds (under the setting's other masks)."""
    kwargs = dict(setting.forward_kwargs)
    fraction = kwargs.pop("_activation", None)
    if fraction:
        removed = 0.0 if kwargs.get("mlp_mask") is None else float(1 - kwargs["mlp_mask"][0].mean())
        kwargs["activation_sparsity"] = _thresholds(model, scores, fraction, kwargs.get("skip_layers", ()),
                                                    kwargs.get("mlp_mask"), removed)
    setting.forward_kwargs = kwargs
    return setting


def closest(settings: list[Setting], target: float) -> Setting:
    """The setting whose FLOPs fraction is nearest the target; marked unreached if farther than the tolerance."""
    best = min(settings, key=lambda s: abs(s.flops_fraction - target))
    return replace(best, forward_kwargs=dict(best.forward_kwargs), target=target,
                   reached=abs(best.flops_fraction - target) <= REACH_TOLERANCE)


def combination_candidates(model, scores: Scores, target: float, context_len: int) -> list[Setting]:
    """Neuron pruning and activation sparsity mixed with as many skipped layers as the target still needs."""
    dims, out = model.dims, []
    for removed in (0.0, 0.2, 0.4):
        mask = mlp_mask_from_scores(scores.neuron_importance, removed) if removed else None
        d_mlp = dims.d_mlp if mask is None else int(mask[0].sum())
        for act in (0.0, 0.2, 0.4):
            for k in range(dims.n_layers):
                f, b = _cost(model, context_len, skipped_layers=k, d_mlp=d_mlp, kept_inputs=1 - act)
                if f <= target + REACH_TOLERANCE / 2:
                    if abs(f - target) <= REACH_TOLERANCE:  # mixes that undershoot the point compare unfairly
                        kwargs = {"skip_layers": layers_to_skip(scores.block_influence, k), "mlp_mask": mask,
                                  "_activation": act}
                        label = f"skip {k} layers + prune {removed:.0%} neurons + {act:.0%} activation sparsity"
                        out.append(Setting("combination", label, kwargs, f, b, target=target))
                    break
    return out


@torch.no_grad()
def quality(model: UnrolledModel, ids: Tensor, full_logits: Tensor, forward_kwargs: dict) -> dict:
    """Top-1 agreement with the full model and perplexity, one teacher-forced forward over ``ids`` [1, T]."""
    kwargs = {k: v for k, v in forward_kwargs.items() if v is not None}
    logits = model(ids, **kwargs).logits  # [1, T, d_vocab]
    return {"agreement": top1_agreement(logits, full_logits), "perplexity": perplexity(logits, ids)}


def plan_levers(model: UnrolledModel, scores: Scores, cost_points, context_len: int,
                selection_ids: Tensor | None = None, progress=None) -> list[Setting]:
    """For each lever and cost point, the setting closest to that FLOPs fraction.

    The combination is chosen among :func:`combination_candidates` by agreement on ``selection_ids``
    (calibration text, never the held-out text it is then evaluated on).
    """
    settings = []
    for lever in LEVERS[:-1]:
        grid = candidate_settings(model, scores, lever, context_len)
        settings += [_materialise(model, scores, closest(grid, t)) for t in cost_points]
    selection_ids = scores.calibration_ids if selection_ids is None else selection_ids
    full = model(selection_ids).logits
    for target in cost_points:
        candidates = [_materialise(model, scores, s) for s in combination_candidates(model, scores, target, context_len)]
        if not candidates:  # no mix lands within REACH_TOLERANCE of this point on this model
            settings.append(Setting("combination", "no mix within reach", {}, 1.0, 1.0, target, reached=False))
            continue
        best = max(candidates, key=lambda s: quality(model, selection_ids, full, s.forward_kwargs)["agreement"])
        settings.append(best)
        if progress is not None:
            progress(f"combination at {target}: {best.label}", flush=True)
    return settings


def timed_model(model: UnrolledModel, hf_model, setting: Setting) -> tuple[UnrolledModel, dict]:
    """What runs when timing ``setting``: a pruned model for head/neuron masks, else the model with its knobs."""
    kwargs = {k: v for k, v in setting.forward_kwargs.items() if v is not None}
    head_mask, mlp_mask = kwargs.pop("head_mask", None), kwargs.pop("mlp_mask", None)
    if head_mask is None and mlp_mask is None:
        return model, kwargs
    skip = kwargs.pop("skip_layers", [])
    small = UnrolledModel(prune(hf_model, skip_layers=skip, head_mask=head_mask, mlp_mask=mlp_mask))
    act = kwargs.get("activation_sparsity")
    if isinstance(act, ActivationThresholds):  # the pruned model has no skipped layers: keep the others' thresholds
        kept = [layer for layer in range(model.dims.n_layers) if layer not in set(skip)]
        kwargs["activation_sparsity"] = ActivationThresholds(act.fraction, act.thresholds[kept])
    return small, kwargs


@torch.no_grad()
def decode_seconds(model: UnrolledModel, ids: Tensor, n_prompt: int, forward_kwargs: dict) -> float:
    """Seconds to decode ``ids[:, n_prompt:]`` one token at a time with a KV cache after an untimed prefill."""
    cache = model(ids[:, :n_prompt], use_cache=True, **forward_kwargs).past_key_values
    start = time.perf_counter()
    for t in range(n_prompt, ids.shape[1]):
        cache = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True, **forward_kwargs).past_key_values
    return time.perf_counter() - start


def decode_time_ratio(full_model: UnrolledModel, model: UnrolledModel, ids: Tensor, forward_kwargs: dict, *,
                      n_prompt: int = 16, repeats: int = 5) -> dict:
    """Median over ``repeats`` alternating pairs of (this setting's decode time / the full model's)."""
    decode_seconds(full_model, ids, n_prompt, {})  # warm-up both
    decode_seconds(model, ids, n_prompt, forward_kwargs)
    ratios, fulls, sparse = [], [], []
    for _ in range(repeats):
        a = decode_seconds(full_model, ids, n_prompt, {})
        b = decode_seconds(model, ids, n_prompt, forward_kwargs)
        ratios.append(b / a)
        fulls.append(a)
        sparse.append(b)
    n = ids.shape[1] - n_prompt
    return {"wall_ratio": statistics.median(ratios), "full_ms_per_token": 1e3 * statistics.median(fulls) / n,
            "ms_per_token": 1e3 * statistics.median(sparse) / n}


RESULTS_FILE = "sparsity_benchmark.json"  # in anee_lite/data: written by benchmarks/bench_sparsity.py


def load_results(path=None) -> dict:
    """The stored benchmark run (``anee_lite/data/sparsity_benchmark.json`` unless ``path``)."""
    import json
    from importlib import resources

    if path is None:
        return json.loads(resources.files("anee_lite").joinpath("data", RESULTS_FILE).read_text(encoding="utf-8"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def format_table(results: dict) -> str:
    """The benchmark's rows as a Markdown table (README and notebook print this same text)."""
    head = ("| cost point | lever | setting | FLOPs | bytes | wall-time | agreement (docs / KJV) "
            "| perplexity (docs / KJV) |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    full = results["full"]
    what = "all 30 layers, heads, neurons" if results["n_layers"] == 30 else "everything"
    lines.append(f"| 1.0 | full model | {what} | 1.000 | 1.000 | 1.00 | 1.000 / 1.000 "
                 f"| {full['python_docs_heldout']['perplexity']:.2f} / {full['kjv_heldout']['perplexity']:.2f} |")
    for r in results["rows"]:
        if not r["reached"]:
            lines.append(f"| {r['target']} | {r['lever']} | cannot reach it (closest: {r['label']}, "
                         f"{r['flops_fraction']:.3f}) | | | | | |")
            continue
        wall = "n/a" if r.get("wall_ratio") is None else f"{r['wall_ratio']:.2f}"
        d, k = r["python_docs_heldout"], r["kjv_heldout"]
        lines.append(f"| {r['target']} | {r['lever']} | {r['label']} | {r['flops_fraction']:.3f} "
                     f"| {r['bytes_fraction']:.3f} | {wall} | {d['agreement']:.3f} / {k['agreement']:.3f} "
                     f"| {d['perplexity']:.2f} / {k['perplexity']:.2f} |")
    return "\n".join(lines)


def format_activation(results: dict) -> str:
    """The activation-sparsity tables of a benchmark run as Markdown: row-reading speed-up per matrix, then decoding.

    The first table gives, per matrix shape and input sparsity, the dense product's time over the
    row-reading product's (selection included), in bold where the forward reads rows; the second
    the user's decoding path per sparsity.
    """
    act = results["activation"]
    lines = ["| matrix [in, out] | " + " | ".join(f"{r['fraction']:.0%}" for r in act["matvec"]["W_QKV"]) + " |",
             "|---|" + "---|" * len(act["matvec"]["W_QKV"])]
    for name, table in act["matvec"].items():
        cells = [f"**{r['rows_speedup']:.2f}x**" if r["used"] == "rows" else f"{r['rows_speedup']:.2f}x" for r in table]
        lines.append(f"| `{name}` {act['shapes'][name]} | " + " | ".join(cells) + " |")
    lines += ["", "| activation sparsity | ms/token | speed-up | agreement in / out | perplexity in / out |",
              "|---|---|---|---|---|"]
    for r in act["decode"]:
        d, k = r["python_docs_heldout"], r["kjv_heldout"]
        lines.append(f"| {r['fraction']:.0%} | {r['ms_per_token']:.1f} | {r['speedup']:.2f}x | "
                     f"{d['agreement']:.3f} / {k['agreement']:.3f} | {d['perplexity']:.2f} / {k['perplexity']:.2f} |")
    return "\n".join(lines)


def best_levers(results: dict) -> dict:
    """Per cost point and text, the reached lever with the highest top-1 agreement: {(target, text): row}."""
    best = {}
    for r in results["rows"]:
        if not r["reached"]:
            continue
        for text in ("python_docs_heldout", "kjv_heldout"):
            key = (r["target"], text)
            if key not in best or r[text]["agreement"] > best[key][text]["agreement"]:
                best[key] = r
    return best


def mask_cost(dims, *, context_len: int, skip_layers=(), head_mask: Tensor | None = None,
              mlp_mask: Tensor | None = None, activation_sparsity: float | None = None) -> dict:
    """FLOPs and bytes fractions of one decoding token in a model pruned to these masks, layer by layer.

    Each layer is charged its own kept query heads, key/value groups (a group runs while any of its
    heads does) and neurons, and the weight rows that activation sparsity's kept inputs read.
    """
    full = full_token_cost(dims, context_len)
    skip = set(skip_layers)
    group = dims.n_heads // dims.n_kv_heads
    total = token_cost(dims, layers_run=0, context_len=context_len)  # the final norm and unembedding
    for layer in range(dims.n_layers):
        if layer in skip:
            continue
        heads = dims.n_heads if head_mask is None else head_mask[layer] != 0  # [H] bool
        n_heads = dims.n_heads if head_mask is None else int(heads.sum())
        n_kv = dims.n_kv_heads if head_mask is None else int(heads.view(dims.n_kv_heads, group).any(-1).sum())
        d_mlp = dims.d_mlp if mlp_mask is None else int((mlp_mask[layer] != 0).sum())
        total = total + sparse_token_cost(dims, context_len=context_len, skipped_layers=dims.n_layers - 1,
                                          n_heads=n_heads, n_kv_heads=n_kv, d_mlp=d_mlp,
                                          kept_inputs=1 - (activation_sparsity or 0.0), unembed=False)
    return {"flops_fraction": cost_fraction(total, full), "bytes_fraction": bytes_fraction(total, full)}
