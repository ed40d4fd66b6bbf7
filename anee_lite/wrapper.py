"""The seed's front door: ``ANEEWrapper(config)``, callable on token ids, with ``generate``."""

from __future__ import annotations

import torch
from torch import Tensor

from .budget import budget_exit_layer
from .config import ANEEConfig
from .core.masks import ActivationThresholds
from .core.model import ForwardOutput, UnrolledModel
from .core.validation import check_context, check_flag, check_fraction, check_hf_model, check_int
from .decoding import GenerationResult, greedy_generate
from .sparsity.calibrate import model_quantiles, thresholds_from_quantiles


class ANEEWrapper:
    """A pretrained LM whose forward pass stops early when its ``energy_budget`` runs out.

    Args:
        config: model name and default budget knobs; ``ANEEConfig()`` (GPT-2) if omitted.
        hf_model: an already loaded HF model to wrap instead of loading ``config.model_name``. It is
            left exactly as it was: the wrapper copies its weights (on ``config.device``) unless
            ``share_weights``.
        tokenizer: its tokenizer (needed by ``generate`` when a prompt is text).
        share_weights: with ``hf_model``, share its memory instead of copying (see
            :class:`~anee_lite.core.model.UnrolledModel`): for models too big to hold twice; the model
            is then moved to ``config.device`` and its linear weights become views of the wrapper's.
            A model the wrapper loads itself is always shared (it is nobody else's).
    """

    def __init__(self, config: ANEEConfig | None = None, *, hf_model=None, tokenizer=None,
                 share_weights: bool = False):
        _check_wrapper_args(config, hf_model)
        self.config = config if config is not None else ANEEConfig()
        if hf_model is None:
            if share_weights:
                raise ValueError("share_weights applies only to a model passed as hf_model=...: a model the "
                                 "wrapper loads itself is always shared")
            from .io.loading import load_pretrained

            hf_model, tokenizer = load_pretrained(self.config.model_name)
            share_weights = True  # the library's own model: no second copy
        if share_weights:
            hf_model = hf_model.to(self.config.device)
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.model = UnrolledModel(hf_model, share_weights=share_weights, device=self.config.device)
        self._tuned_lens = None  # loaded on the first draft_lens="tuned" request
        self._activation_quantiles = None  # loaded or calibrated on the first activation_sparsity fraction
        check_int("min_layers", self.config.min_layers, low=0, high=self.n_layers)

    @property
    def n_layers(self) -> int:
        """Decoder layers in the wrapped model."""
        return self.model.dims.n_layers

    def exit_layer(self, energy_budget: float | None = None, min_layers: int | None = None,
                   exit_budget_threshold: float | None = None) -> int:
        """Layers the seed's controller runs for these knobs (each defaults to the config's)."""
        cfg = self.config
        return budget_exit_layer(
            self.n_layers,
            cfg.energy_budget if energy_budget is None else energy_budget,
            cfg.min_layers if min_layers is None else min_layers,
            cfg.exit_budget_threshold if exit_budget_threshold is None else exit_budget_threshold,
        )

    def __call__(self, input_ids: Tensor, energy_budget: float | None = None, attention_mask: Tensor | None = None,
                 *, min_layers: int | None = None, exit_budget_threshold: float | None = None,
                 **forward_kwargs) -> ForwardOutput:
        """Forward pass under a budget: ``out["logits"]`` [B, T, vocab] and ``out["stats"]``.

        ``exit_layers=`` or ``controller=`` (see :meth:`UnrolledModel.forward`) replace the budget;
        other keyword arguments (``use_cache``, ``return_resid``, ...) pass through; an
        ``activation_sparsity`` fraction uses the calibrated thresholds (:meth:`activation_thresholds`).
        """
        forward_kwargs = self._with_thresholds(forward_kwargs)
        if "exit_layers" in forward_kwargs or "controller" in forward_kwargs:
            _no_budget_with("exit_layers/controller: pass one or the other", energy_budget, min_layers,
                            exit_budget_threshold)
            return self.model.forward(input_ids, attention_mask, **forward_kwargs)
        n = self.exit_layer(energy_budget, min_layers, exit_budget_threshold)
        return self.model.forward(input_ids, attention_mask, exit_layers=n, **forward_kwargs)

    def activation_thresholds(self, fraction: float) -> ActivationThresholds:
        """TEAL thresholds that zero ``fraction`` of the input of every matrix (calibration text, not yours).

        Shipped for smollm2-135m; any other model is calibrated once, on first use, on the shipped
        Python-docs calibration text (a progress bar shows it). On other text the share zeroed
        differs a little: the thresholds are magnitudes, compared per token, not a per-token sort.
        """
        fraction = check_fraction("activation_sparsity", fraction)
        if fraction >= 1:
            raise ValueError(f"activation_sparsity must be in [0, 1): the share of each input zeroed, got {fraction}")
        if self._activation_quantiles is None:
            self._activation_quantiles = model_quantiles(self.model, self.config.model_name, self.tokenizer)
        return thresholds_from_quantiles(self._activation_quantiles, fraction)

    def _with_thresholds(self, knobs: dict) -> dict:
        """The forward's keywords with an ``activation_sparsity`` fraction turned into calibrated thresholds."""
        fraction = knobs.get("activation_sparsity")
        if fraction is None or isinstance(fraction, ActivationThresholds) or fraction == 0:
            return knobs
        return {**knobs, "activation_sparsity": self.activation_thresholds(fraction)}

    def draft_lens(self, draft_lens: str | None, draft_layers: int | None):
        """The lens object a speculative draft reads through: None (logit lens) or the shipped tuned lens."""
        from .adaptive.evaluate import load_lens

        if draft_lens is None or draft_lens == "logit":
            return None
        if draft_lens != "tuned":
            raise ValueError(f"draft_lens must be 'logit' or 'tuned', got {draft_lens!r}")
        if self._tuned_lens is None:
            self._tuned_lens, _ = load_lens(self.model, self.config.model_name, "tuned")
        lens = self._tuned_lens
        if draft_layers in lens.layers or not isinstance(draft_layers, int) or isinstance(draft_layers, bool):
            return lens  # a bad draft_layers is reported by greedy_generate's own check
        raise ValueError(f"draft_lens='tuned' has translators only after layers {lens.layers}, "
                         f"got draft_layers={draft_layers}")

    def encode(self, prompt: str | list[str], tokenizer=None) -> tuple[Tensor, Tensor]:
        """Tokenize one prompt or a list (left-padded) -> input_ids, attention_mask [B, T]."""
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError("tokenizer is required: pass tokenizer=... or build the wrapper with one")
        if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
            raise TypeError(f"tokenizer must be a HuggingFace tokenizer (the second value load_pretrained returns), "
                            f"got {type(tokenizer).__name__}")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        rows = [tokenizer(p)["input_ids"] for p in prompts]
        if any(len(r) == 0 for r in rows):
            raise ValueError("prompt must not be empty: the model needs at least one token to continue")
        longest = max(len(r) for r in rows)
        check_context(self.model.dims, longest, f"a prompt of {longest} tokens")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        ids = torch.tensor([[pad] * (longest - len(r)) + r for r in rows])  # left padding
        mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows])
        return ids.to(self.model.device), mask.to(self.model.device)

    def generate(self, tokenizer=None, prompt: str | list[str] | None = None, max_new_tokens: int = 20,
                 energy_budget: float | None = None, *, min_layers: int | None = None,
                 exit_budget_threshold: float | None = None, use_cache: bool = True, controller=None,
                 draft_layers: int | None = None, draft_tokens: int | None = None, draft_lens: str | None = None,
                 masks: dict | None = None, kv_fill: str | None = None,
                 return_result: bool = False) -> str | list[str] | GenerationResult:
        """Greedy continuation of ``prompt`` under a budget (or a controller), or self-speculatively.

        With ``draft_layers=L`` and ``draft_tokens=K`` the first L layers draft K tokens at a time and
        all layers verify them: the text is exactly the full-depth greedy text (no budget applies), and
        ``result.speculative`` holds acceptance rate, tokens per verify pass and draft/verify time.
        ``draft_lens`` is "logit" (default) or "tuned" (the tuned lens shipped for smollm2-135m, at
        layers 9, 12, ..., 27 only).
        ``masks``: the forward's sparsity keywords (``skip_layers``, ``head_mask``, ``mlp_mask``,
        ``activation_sparsity``), applied at every step (not with speculation); an
        ``activation_sparsity`` fraction such as 0.5 uses the calibrated thresholds
        (:meth:`activation_thresholds`), so decoding reads about half of every block's weights.
        ``kv_fill``: how an exited token's deeper keys/values are filled: ``"propagate"`` (from its frozen
        residual) or ``"catch_up"`` (its skipped layers run in full beside the next token: every key and
        value is the full model's; see ``UnrolledModel.forward``). Default: catch-up with a ``controller``
        (a calibrated threshold keeps its promise only with exact keys/values), else propagate.

        Returns prompt + continuation decoded with ``skip_special_tokens=True`` (a list for a list
        of prompts), or the :class:`GenerationResult` with per-token layers and timings if
        ``return_result``. Generation stops at the tokenizer's EOS token, as HF ``generate`` does.
        """
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if prompt is None:
            raise ValueError("prompt is required")
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
        check_flag("return_result", return_result)
        ids, mask = self.encode(prompt, tokenizer)
        speculative = draft_layers is not None or draft_tokens is not None or draft_lens is not None
        if speculative:
            _no_budget_with("draft_layers/draft_tokens: speculative decoding keeps the full-depth text",
                            energy_budget, min_layers, exit_budget_threshold)
            exit_layers = None
            draft_lens = self.draft_lens(draft_lens, draft_layers)
        elif controller is not None:
            _no_budget_with("a controller: pass one or the other", energy_budget, min_layers, exit_budget_threshold)
            exit_layers = None
        else:
            exit_layers = self.exit_layer(energy_budget, min_layers, exit_budget_threshold)
        if isinstance(masks, dict):
            masks = self._with_thresholds(masks)
        result = greedy_generate(self.model, ids, mask, max_new_tokens=max_new_tokens, exit_layers=exit_layers,
                                 controller=controller, use_cache=use_cache, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, draft_layers=draft_layers,
                                 draft_tokens=draft_tokens, draft_lens=draft_lens, masks=masks, kv_fill=kv_fill)
        if return_result:
            return result
        texts = [tokenizer.decode(row[:ids.shape[1]][m.bool()].tolist() + row[ids.shape[1]:].tolist(),
                                  skip_special_tokens=True)
                 for row, m in zip(result.sequences, mask)]
        return texts[0] if isinstance(prompt, str) else texts


def _no_budget_with(other: str, energy_budget, min_layers, exit_budget_threshold) -> None:
    """The seed's budget knobs and ``other`` (another way to choose the depth) exclude each other."""
    if energy_budget is not None or min_layers is not None or exit_budget_threshold is not None:
        raise ValueError(f"energy_budget, min_layers and exit_budget_threshold do not apply with {other}")


def _check_wrapper_args(config, hf_model) -> None:
    if config is not None and not isinstance(config, ANEEConfig):
        raise TypeError(f"config must be an ANEEConfig (e.g. ANEEConfig(model_name='gpt2')), got {type(config).__name__}")
    if hf_model is not None:
        check_hf_model("hf_model", hf_model)
