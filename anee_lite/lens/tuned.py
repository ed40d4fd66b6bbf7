"""Lenses for reading a prediction off a middle layer: the plain logit lens and a tuned lens.

The logit lens applies the model's own final norm and unembedding to a middle residual. Middle
layers do not yet speak the last layer's "language", so it is poorly calibrated there. The tuned
lens (Belrose et al., 2023, "Eliciting Latent Predictions from Transformers with the Tuned Lens")
first maps the residual with a per-layer affine translator ``h -> h + h @ W + b``, initialised to
the identity (W = 0, b = 0) and trained so that the lens distribution matches the final one (KL).

Both lenses share one small interface, used by the exit controllers:
``translate(layer, resid)``, ``logits(layer, resid)``, ``readout(resid, exit_layers)`` and
``translator_macs(layer)`` (what the cost model charges for one translation).
Translators are saved as safetensors (never pickle), W stored as fp16 to keep shipped files small.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from ..core.metrics import kl_divergence
from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_chunks, check_flag, check_fraction, check_int, check_layers
from ..io.files import MODEL_SIZES, layer_tensors, read_safetensors, write_safetensors
from .logit import LogitLens


class TunedLens(LogitLens):
    """Per-layer affine translators; layers without one fall back to the logit lens.

    Args:
        model: the unrolled model the translators were trained for.
        weights: layer -> [d, d] W (the translator is ``h + h @ W + b``).
        biases: layer -> [d] b.
    """

    kind = "tuned"

    def __init__(self, model: UnrolledModel, weights: dict[int, Tensor], biases: dict[int, Tensor]):
        super().__init__(model)
        d, n_layers = model.dims.d_model, model.dims.n_layers
        if not isinstance(weights, dict) or not isinstance(biases, dict) or set(weights) != set(biases):
            raise TypeError("weights and biases must be dicts with the same layers as keys, got "
                            f"{sorted(weights) if isinstance(weights, dict) else type(weights).__name__} and "
                            f"{sorted(biases) if isinstance(biases, dict) else type(biases).__name__}")
        for layer in weights:  # a translator reads the residual after `layer` layers; the last is the output
            check_int("tuned lens layer", layer, low=0, high=n_layers - 1)
        for layer, w in weights.items():
            if not isinstance(w, Tensor) or not isinstance(biases[layer], Tensor):
                raise TypeError(f"translator for layer {layer} must be tensors, got {type(w).__name__} and "
                                f"{type(biases[layer]).__name__}")
            if tuple(w.shape) != (d, d) or tuple(biases[layer].shape) != (d,):
                raise ValueError(f"translator for layer {layer} must be [{d}, {d}] and [{d}], "
                                 f"got {list(w.shape)} and {list(biases[layer].shape)}")
        self.weights = weights
        self.biases = biases
        self.layers = sorted(weights)

    @classmethod
    def identity(cls, model: UnrolledModel, layers: list[int]) -> TunedLens:
        """Translators that change nothing yet (the starting point of training)."""
        d = model.dims.d_model
        return cls(model, {l: torch.zeros(d, d) for l in layers}, {l: torch.zeros(d) for l in layers})

    def translate(self, layer: int, resid: Tensor) -> Tensor:
        if layer not in self.weights:
            return resid
        w, b = self.weights[layer], self.biases[layer]
        return resid + resid @ w.to(resid.dtype) + b.to(resid.dtype)  # [..., d] @ [d, d] -> [..., d]

    def _translated(self) -> set[int]:
        return set(self.weights)

    def translator_macs(self, layer: int) -> int:
        d = self.model.dims.d_model
        return d * d if layer in self.weights else 0

    def save(self, path: str | Path, model_name: str = "") -> None:
        """Write the translators (W as fp16, b as fp32) to a safetensors file, atomically, with a checksum and the
        sizes of the model they belong to (:func:`~anee_lite.io.files.write_safetensors`)."""
        tensors = {}
        for layer in self.layers:
            tensors[f"layer.{layer}.weight"] = self.weights[layer].detach().to(torch.float16).contiguous()
            tensors[f"layer.{layer}.bias"] = self.biases[layer].detach().float().contiguous()
        dims = self.model.dims
        write_safetensors(path, tensors, "tuned_lens",
                          {"model": model_name, **{k: str(getattr(dims, k)) for k in MODEL_SIZES}})

    @classmethod
    def load(cls, model: UnrolledModel, path: str | Path) -> TunedLens:
        """Read translators written by :meth:`save` (float32 in memory), checked against ``model``."""
        tensors, _ = read_safetensors(path, "tuned_lens", check_unrolled(model).dims)
        parts = layer_tensors(path, tensors, ("weight", "bias"))
        d = model.dims.d_model
        weights = {l: w.float() for l, w in parts["weight"].items()}
        biases = {l: b.float() for l, b in parts["bias"].items()}
        bad = [l for l in weights if tuple(weights[l].shape) != (d, d)] + [l for l in biases if tuple(biases[l].shape) != (d,)]
        if bad or set(weights) != set(biases) or not weights:
            raise ValueError(f"{path} must hold a [{d}, {d}] weight and a [{d}] bias per layer; layers {sorted(set(bad))} "
                             f"do not, or the weights' and biases' layers differ")
        try:
            return cls(model, weights, biases)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} does not fit this model: {exc}") from None


@torch.no_grad()
def collect_residuals(model: UnrolledModel, chunks: list[Tensor], layers: list[int],
                      top_k: int = 128) -> dict[str, Tensor]:
    """Residuals at ``layers`` and the final distribution's top-k, for every token of ``chunks``.

    Args:
        chunks: [1, T] token-id tensors, each run from an empty context.
        layers: residual after this many layers is kept (1..n_layers-1).
        top_k: final-distribution entries kept per token; the rest of the mass is dropped in training.

    Returns:
        ``resid`` [len(layers), N, d], ``prev`` [len(layers), N, d] (the residual one layer
        earlier), ``final`` [N, d] (the last residual), ``top_ids``/``top_logp`` [N, top_k] and
        ``final_top1`` [N] and ``layers`` [len(layers)] (so training can tell data for other layers).
    """
    from tqdm.auto import tqdm

    check_unrolled(model)
    chunks = check_chunks("chunks", chunks, model.dims.d_vocab)
    layers = check_layers("layers", layers, low=1, high=model.dims.n_layers - 1)
    top_k = check_int("top_k", top_k, low=1, high=model.dims.d_vocab)
    resid, prev, final, top_ids, top_logp = [], [], [], [], []
    for ids in tqdm(chunks, desc="residuals", leave=False):
        stack = model.forward(ids, return_resid=True).resid_stack()[:, 0]  # [L + 1, T, d]
        logp = model.logits_from_resid(stack[-1]).log_softmax(-1)  # [T, V]
        lp, ix = logp.topk(top_k, dim=-1)  # [T, k]
        resid.append(stack[layers])
        prev.append(stack[[l - 1 for l in layers]])
        final.append(stack[-1])
        top_ids.append(ix)
        top_logp.append(lp)
    return {"resid": torch.cat(resid, 1), "prev": torch.cat(prev, 1), "final": torch.cat(final),
            "top_ids": torch.cat(top_ids),
            "top_logp": torch.cat(top_logp), "final_top1": torch.cat(top_ids)[:, 0],
            "layers": torch.tensor(layers)}


def check_residual_data(data, layers, n_layers: int) -> list[int]:
    """``data`` must be what :func:`collect_residuals` returned for exactly these ``layers`` (same order)."""
    layers = check_layers("layers", layers, low=1, high=n_layers - 1)
    if not isinstance(data, dict):
        raise TypeError(f"data must be the dict collect_residuals(model, chunks, layers) returns, "
                        f"got {type(data).__name__}")
    missing = [k for k in ("resid", "prev", "final", "top_ids", "top_logp", "final_top1") if k not in data]
    if missing:
        raise ValueError(f"data lacks {missing}: pass what collect_residuals(model, chunks, layers) returns")
    # Row i of data["resid"] belongs to the i-th layer it was collected for: other layers would train silently wrong.
    collected = data["layers"].tolist() if "layers" in data else None
    if collected is not None and collected != layers:
        raise ValueError(f"layers must be the layers data was collected for, {collected}, got {layers}")
    if data["resid"].shape[0] != len(layers):
        raise ValueError(f"data holds residuals of {data['resid'].shape[0]} layers, but layers lists {len(layers)}")
    return layers


def least_squares_translators(data: dict[str, Tensor], layers: list[int], ridge: float = 0.01):
    """Per layer, W minimising ||x (I + W) - y||^2 + ridge * N * ||W||^2 on RMS-normalised residuals.

    The final norm makes the lens blind to the residual's scale, so we match directions: x and y are
    the layer's and the last residual, each scaled to unit RMS. The ridge term pulls W towards 0,
    that is, the translator towards the identity. One linear solve per layer uses every token at once,
    which a few hundred CPU-affordable gradient steps cannot.
    """
    def unit_rms(t):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)

    y = unit_rms(data["final"].double())  # [N, d]
    weights = {}
    for i, layer in enumerate(layers):
        x = unit_rms(data["resid"][i].double())  # [N, d]
        gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)  # [d, d]
        weights[layer] = torch.linalg.solve(gram, x.T @ (y - x)).float()  # [d, d]
    return weights


def train_tuned_lens(model: UnrolledModel, data: dict[str, Tensor], layers: list[int], *, steps: int = 200,
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0, warm_start: bool = True) -> TunedLens:
    """Fit one translator per layer to minimise KL(final || tuned lens), with Adam on random token batches.

    Args:
        data: the output of :func:`collect_residuals` for the same ``layers``.
        steps: optimiser steps (each sees ``batch_size`` tokens at every layer).
        warm_start: start from :func:`least_squares_translators` instead of the identity.
    """
    from tqdm.auto import tqdm

    check_unrolled(model)
    layers = check_residual_data(data, layers, model.dims.n_layers)
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_fraction("lr", lr, high=math.inf)
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    seed = check_int("seed", seed, low=0)
    check_flag("warm_start", warm_start)
    gen = torch.Generator().manual_seed(seed)
    lens = TunedLens.identity(model, layers)
    if warm_start:
        lens.weights.update(least_squares_translators(data, layers))
    params = [p.requires_grad_() for l in layers for p in (lens.weights[l], lens.biases[l])]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    target_p = data["top_logp"].exp()
    target_p = target_p / target_p.sum(-1, keepdim=True)  # [N, k] renormalised top-k of the final distribution
    n = data["resid"].shape[1]
    bar = tqdm(range(steps), desc="tuned lens")
    for _ in bar:
        idx = torch.randint(n, (batch_size,), generator=gen)
        loss = 0.0
        for i, layer in enumerate(layers):
            logq = lens.logits(layer, data["resid"][i, idx]).log_softmax(-1)  # [b, V]
            loss = loss - (target_p[idx] * logq.gather(-1, data["top_ids"][idx])).sum(-1).mean()  # cross-entropy
        opt.zero_grad()
        (loss / len(layers)).backward()
        opt.step()
        sched.step()
        bar.set_postfix(ce=f"{loss.item() / len(layers):.3f}")
    for p in params:
        p.requires_grad_(False)
    return lens


@torch.no_grad()
def lens_quality(lens, stacks: list[Tensor], layers: list[int]) -> dict[str, list[float]]:
    """Per layer, the lens's top-1 agreement with the model's output and its mean KL(final || lens).

    Args:
        stacks: per chunk, [n_layers + 1, T, d] full-depth residuals (``Replay.stacks``).
        layers: the layers to score.
    """
    finals = [lens.model.logits_from_resid(stack[-1]).log_softmax(-1) for stack in stacks]  # per chunk [T, V], once
    agree, kl = [], []
    for layer in layers:
        same, div = [], []
        for stack, final in zip(stacks, finals):
            logq = lens.logits(layer, stack[layer]).log_softmax(-1)  # [T, V]
            same.append(logq.argmax(-1) == final.argmax(-1))
            div.append(kl_divergence(final, logq))  # [T]
        agree.append(float(torch.cat(same).float().mean()))
        kl.append(float(torch.cat(div).mean()))
    return {"layers": list(layers), "agreement": agree, "kl": kl}
