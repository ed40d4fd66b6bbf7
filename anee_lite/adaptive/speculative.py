"""How often a shallow draft would be accepted, for every draft depth at once, from one full-depth pass.

In self-speculative decoding every draft the full model judges sits on the full model's own greedy
path: everything before it was accepted, and accepted tokens are the greedy tokens. So the acceptance
rate of a draft at depth L is exactly how often the lens at layer L names the full model's next token
along the greedy continuation, which one forward with the residual stream gives for every L.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.model import UnrolledModel, check_unrolled
from ..core.validation import check_input_ids, check_int, check_layers
from ..decoding import greedy_generate


@torch.no_grad()
def acceptance_by_depth(model: UnrolledModel, lenses: dict, input_ids: Tensor, max_new_tokens: int) -> dict:
    """{lens name: {L: a}} for a [1, T] prompt: the draft's acceptance rate at every depth it can read.

    Args:
        lenses: name -> lens with ``logits(layer, resid)``; a lens with ``layers`` (a tuned lens) is read
            only there, others at every L in 1..n_layers-1.
        max_new_tokens: length of the greedy continuation the rates are measured on (>= 1).
    """
    check_unrolled(model)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=1)
    if not isinstance(lenses, dict) or not lenses:
        raise TypeError(f"lenses must be a non-empty dict name -> lens (e.g. {{'logit': LogitLens(model)}}), "
                        f"got {lenses!r}")
    n_layers = model.dims.n_layers
    read_at = {}
    for name, lens in lenses.items():
        if not callable(getattr(lens, "logits", None)):
            raise TypeError(f"lenses[{name!r}] must be a lens with logits(layer, resid) such as LogitLens(model), "
                            f"got {type(lens).__name__}")
        read_at[name] = check_layers(f"lenses[{name!r}].layers", getattr(lens, "layers", range(1, n_layers)),
                                     low=0, high=n_layers)
    input_ids = check_input_ids(input_ids, model.dims.d_vocab)
    if input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must be one prompt, shape [1, T], got {list(input_ids.shape)}")
    T = input_ids.shape[1]
    seq = greedy_generate(model, input_ids, max_new_tokens=max_new_tokens).sequences  # [1, T + n]
    n = seq.shape[1] - T
    stack = model.forward(seq[:, :-1], return_resid=True).resid_stack()[:, 0, T - 1:]  # [n_layers + 1, n, d_model]
    target = seq[0, T:]  # [n] the full model's own tokens
    rates = {}
    for name, lens in lenses.items():
        rates[name] = {l: float((lens.logits(l, stack[l]).argmax(-1) == target[:n]).float().mean())
                       for l in read_at[name]}
    return rates
