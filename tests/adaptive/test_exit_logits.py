"""A lens check's logits are the exit logits: computed once, charged once, equal to the old readout path."""

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama
from torch.utils.flop_counter import FlopCounterMode

from anee_lite import UnrolledModel
from anee_lite.adaptive import make_controller
from anee_lite.cost import norm_macs, token_cost
from anee_lite.lens import LogitLens, TunedLens


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    hf = random_gpt2(n_layer=4, n_positions=64) if request.param == "gpt2" else random_llama(n_layers=4)
    return UnrolledModel(hf)


def tuned(model, same_translators=False):
    """A tuned lens at layers 1 and 2 with small random translators (the same one twice if asked)."""
    g = torch.Generator().manual_seed(0)
    d = model.dims.d_model
    weights = {l: 0.05 * torch.randn(d, d, generator=g) for l in (1, 2)}
    biases = {l: 0.05 * torch.randn(d, generator=g) for l in (1, 2)}
    if same_translators:
        weights[2], biases[2] = weights[1], biases[1]
    return TunedLens(model, weights, biases)


def old_path_logits(model, controller, out):
    """What the forward used to do: unembed every token's frozen final residual again, through the readout."""
    final = out.resid_stack()[-1]  # [B, T, d] (exited tokens' residuals are frozen)
    return model.logits_from_resid(controller.readout(final, out.stats.exit_layers))


@torch.no_grad()
def mixed_threshold(model, name, lens, ids):
    """The median score at layer 1: about half the tokens stop at the first check, the others run on."""
    c = make_controller(name, lens, 0.0, exit_layers_allowed=[1, 2])
    resid1 = model.forward(ids, exit_layers=1, return_resid=True).resid_stack()[-1]  # [B, T, d] after layer 1
    return float(c.score(1, resid1).median())


@pytest.mark.parametrize("name", ["confidence", "margin", "entropy", "patience"])
@pytest.mark.parametrize("lens_kind", ["logit", "tuned"])
def test_exit_logits_equal_the_old_readout_path(model, name, lens_kind):
    # patience stops when two checks agree: random, unrelated translators would never let it
    lens = LogitLens(model) if lens_kind == "logit" else tuned(model, same_translators=name == "patience")
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    threshold = 1 if name == "patience" else mixed_threshold(model, name, lens, ids)
    c = make_controller(name, lens, threshold, exit_layers_allowed=[1, 2])
    out = model.forward(ids, controller=c, return_resid=True)
    exits = out.stats.exit_layers
    # some tokens reuse their check's logits: patience needs one earlier check to agree with, so it
    # can stop first at layer 2 (still below the 4 layers of the model)
    first_exit = 2 if name == "patience" else 1
    assert bool((exits == first_exit).any())
    torch.testing.assert_close(out.logits, old_path_logits(model, c, out), rtol=0, atol=1e-5)
    kept = model.forward(ids, controller=c, logits_to_keep=3)
    torch.testing.assert_close(kept.logits, out.logits[:, -3:], rtol=0, atol=1e-5)
    assert torch.equal(kept.stats.exit_layers, exits)


def test_exit_logits_with_a_kv_cache_and_per_token_exits(model):
    lens = tuned(model)
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(2))
    c = make_controller("confidence", lens, mixed_threshold(model, "confidence", lens, ids), exit_layers_allowed=[1, 2])
    whole = model.forward(ids, controller=c)
    cache, steps = None, []
    for t in range(ids.shape[1]):  # the same tokens decoded one by one with the cache
        out = model.forward(ids[:, t:t + 1], controller=c, past_key_values=cache, use_cache=True, return_resid=True)
        torch.testing.assert_close(out.logits, old_path_logits(model, c, out), rtol=0, atol=1e-5)
        cache = out.past_key_values
        steps.append(out.stats.exit_layers)
    assert len({tuple(s.flatten().tolist()) for s in steps}) > 1 or bool(whole.stats.exited_early)


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("threshold, exit_layer", [(-1.0, 1), (2.0, None)])  # stops at the first check / never
def test_the_unembedding_runs_and_is_charged_once_per_token(model, threshold, exit_layer):
    dims = model.dims
    n = dims.n_layers
    c = make_controller("confidence", LogitLens(model), threshold, exit_layers_allowed=[1, 2], sink_tokens=0)
    ids = torch.tensor([[3]])  # one token, so position 0: sink_tokens=0 lets it stop
    got = counted_flops(lambda: model.forward(ids, controller=c, return_patterns=True))
    L = exit_layer or n
    cost = token_cost(dims, layers_run=L, context_len=1, **c.charges(L))
    # FlopCounterMode sees matrix products only: the norms the cost model charges by convention come off
    norms = cost.norms + c.charges(L)["lens_checks"] * norm_macs(dims)
    assert got == cost.flops - 2 * norms
    layers_only = token_cost(dims, layers_run=L, context_len=1, unembed=False)
    unembeddings = (got - (layers_only.flops - 2 * layers_only.norms)) / (2 * dims.d_model * dims.d_vocab)
    assert unembeddings == len(c.checked_layers(L)) + (L == n)  # each check once, the output never twice
