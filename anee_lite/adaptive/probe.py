"""A learned exit probe (CALM-style): a tiny classifier on the hidden state that says "exit now".

At each allowed layer a logistic regression reads the RMS-normalised residual and one cheap extra
feature, the cosine between this residual and the one a layer earlier, and predicts whether the
readout lens's top-1 at this layer already equals the full model's. Deciding costs a few
d_model-long reductions (normalise, one cosine, one dot product: :attr:`ExitProbe.macs_per_check`),
against the ~d_model x d_vocab multiply-adds of a lens check, so it can run at every allowed layer almost for free.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io.files import layer_tensors, read_safetensors, write_safetensors
from ..lens.tuned import check_residual_data

# d_model-long reductions to build the features: the RMS norm's sum of squares and the cosine's three.
FEATURE_REDUCTIONS = 4


def probe_features(resid: Tensor, prev: Tensor) -> Tensor:
    """[..., d] residual and the one a layer earlier -> [..., d + 1] features."""
    normed = resid * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + 1e-6)  # [..., d], unit RMS
    cos = F.cosine_similarity(resid, prev, dim=-1)[..., None]  # [..., 1]
    return torch.cat([normed, cos], dim=-1)


class ExitProbe:
    """Per-layer logistic regressions on :func:`probe_features`.

    Args:
        weights: layer -> [d + 1] weights; biases: layer -> scalar tensor.
        lens_kind: which readout lens the labels came from ("tuned" or "logit").
    """

    def __init__(self, weights: dict[int, Tensor], biases: dict[int, Tensor], lens_kind: str = "tuned"):
        if not isinstance(weights, dict) or not isinstance(biases, dict) or not weights:
            raise TypeError("weights and biases must be non-empty dicts layer -> tensor (train_probe builds them)")
        if set(weights) != set(biases):
            raise ValueError(f"weights and biases must have the same layers, got {sorted(weights)} and {sorted(biases)}")
        sizes = {tuple(w.shape) if isinstance(w, Tensor) else None for w in weights.values()}
        if len(sizes) != 1 or None in sizes or len(next(iter(sizes))) != 1:
            raise ValueError(f"weights must be 1-d tensors of one length (d_model + 1) at every layer, got shapes {sizes}")
        if any(not isinstance(b, Tensor) or b.numel() != 1 for b in biases.values()):
            raise ValueError("biases must be one-element tensors (one scalar per layer)")
        self.weights = weights
        self.biases = biases
        self.lens_kind = lens_kind
        self.layers = sorted(weights)
        self._cut: dict = {}  # (layer, dtype) -> the tensors it was cut from, and the parts (see _parts)

    @property
    def macs_per_check(self) -> int:
        """Multiply-adds of one decision: the feature reductions, then the (d_model + 1)-long dot product."""
        n_features = int(next(iter(self.weights.values())).shape[0])  # d_model + 1
        return FEATURE_REDUCTIONS * (n_features - 1) + n_features

    def prob(self, layer: int, resid: Tensor, prev: Tensor) -> Tensor:
        """[..., d] -> [...] probability that the lens's top-1 at ``layer`` is the final one.

        The same number as ``sigmoid(probe_features(resid, prev) @ w + b)``, with the normalisation folded
        into the dot product instead of building the features: a decoding step makes this call at every
        allowed layer, and each tensor operation it saves is time the exit must win back.
        """
        w_resid, w_cos, b = self._parts(layer, resid.dtype)  # [d], [], []
        scale = torch.rsqrt(resid.pow(2).mean(-1) + 1e-6)  # [...]: 1 / RMS, as in probe_features
        cos = F.cosine_similarity(resid, prev, dim=-1)  # [...]
        return torch.sigmoid(torch.addcmul(cos * w_cos + b, resid @ w_resid, scale))  # [...]

    def _parts(self, layer: int, dtype) -> tuple[Tensor, Tensor, Tensor]:
        """The residual's weights [d], the cosine's weight and the bias at ``dtype``, cut once and kept
        (cut again if ``weights[layer]`` or ``biases[layer]`` was replaced since)."""
        w, b = self.weights[layer], self.biases[layer]
        kept = self._cut.get((layer, dtype))
        if kept is None or kept[0] is not w or kept[1] is not b:
            w_dtype = w.to(dtype)  # [d + 1]
            kept = self._cut[layer, dtype] = (w, b, (w_dtype[:-1], w_dtype[-1], b.to(dtype)))
        return kept[2]

    def save(self, path: str | Path, model_name: str = "") -> None:
        """Write the probe to a safetensors file, atomically and with a checksum
        (:func:`~anee_lite.io.files.write_safetensors`)."""
        tensors = {}
        for layer in self.layers:
            tensors[f"layer.{layer}.weight"] = self.weights[layer].float().contiguous()
            tensors[f"layer.{layer}.bias"] = self.biases[layer].float().reshape(1).contiguous()
        n_features = int(next(iter(self.weights.values())).shape[0])  # d_model + 1
        write_safetensors(path, tensors, "exit_probe",
                          {"model": model_name, "lens": self.lens_kind, "d_model": str(n_features - 1)})

    @classmethod
    def load(cls, path: str | Path, model=None) -> ExitProbe:
        """Read a probe written by :meth:`save`; with ``model``, check it was trained for one of its width."""
        tensors, meta = read_safetensors(path, "exit_probe", None if model is None else model.dims)
        parts = layer_tensors(path, tensors, ("weight", "bias"))
        try:  # a bias of another size is left for __init__ to refuse, not cut to its first entry
            probe = cls(parts["weight"], {l: b.reshape(()) if b.numel() == 1 else b for l, b in parts["bias"].items()},
                        meta.get("lens", "tuned"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a usable exit probe: {exc}") from None
        if model is not None:
            probe.check_fits(model, path)
        return probe

    def check_fits(self, model, where="the probe") -> None:
        """Refuse a probe trained for a model of another width or depth (it would fail deep in a product)."""
        width = int(next(iter(self.weights.values())).shape[0]) - 1  # weights are [d_model + 1]
        if width != model.dims.d_model or max(self.layers) >= model.dims.n_layers:
            raise ValueError(f"{where} was trained for a model with d_model={width} and layers {self.layers}; "
                             f"this model has d_model={model.dims.d_model} and {model.dims.n_layers} layers")


def fit_logistic(x: Tensor, y: Tensor, *, weight_decay: float = 1e-3, steps: int = 100) -> tuple[Tensor, Tensor]:
    """Logistic regression by L-BFGS on standardised features; returns (w [f], b) for raw features."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)  # [f]
    z = (x - mean) / std  # [N, f]
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w / std).detach()  # fold the standardisation into the weights
    return w_raw, (b - (w.detach() * mean / std).sum()).detach()


@torch.no_grad()
def probe_labels(lens, data: dict[str, Tensor], layers: list[int], block: int = 2048) -> Tensor:
    """[len(layers), N] 1.0 where the lens's top-1 at the layer equals the final top-1.

    ``block`` tokens are read out at a time: [N, d_vocab] logits for tens of thousands of tokens would
    not fit in memory.
    """
    rows = []
    for i, layer in enumerate(layers):
        top1 = torch.cat([lens.logits(layer, part).argmax(-1) for part in data["resid"][i].split(block)])  # [N]
        rows.append(top1 == data["final_top1"])
    return torch.stack(rows).float()


def train_probe(lens, data: dict[str, Tensor], layers: list[int]) -> ExitProbe:
    """Fit one logistic regression per layer on residuals from :func:`~anee_lite.tuned_lens.collect_residuals`."""
    from tqdm.auto import tqdm

    if not hasattr(lens, "logits") or not hasattr(lens, "model"):
        raise TypeError(f"lens must be a LogitLens or TunedLens, got {type(lens).__name__}")
    layers = check_residual_data(data, layers, lens.model.dims.n_layers)
    labels = probe_labels(lens, data, layers)  # [L, N]
    weights, biases = {}, {}
    for i, layer in enumerate(tqdm(layers, desc="exit probe", leave=False)):
        x = probe_features(data["resid"][i], data["prev"][i])  # [N, d + 1]
        weights[layer], biases[layer] = fit_logistic(x, labels[i])
    return ExitProbe(weights, biases, lens.kind)
