"""An architecture is one file plus its test: Mistral (core/architectures/mistral.py) against HuggingFace, and
everything else in the library finds it through the registry alone; an unknown one is refused everywhere."""

import pytest
import torch
from conftest import VOCAB
from transformers import MistralConfig, MistralForCausalLM

from anee_lite import UnrolledModel
from anee_lite.core.architectures import CONVERTERS, converter_for
from anee_lite.cost import token_cost
from anee_lite.cost.devices import PROFILES
from anee_lite.cost.simulator import pass_ops, simulate_decode
from anee_lite.sparsity import prune

TOL = 1e-4


def random_mistral(n_layers=3, window=24, seed=0):
    torch.manual_seed(seed)
    cfg = MistralConfig(num_hidden_layers=n_layers, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=136, vocab_size=VOCAB, max_position_embeddings=128, sliding_window=window,
                        bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = MistralForCausalLM(cfg).eval()
    with torch.no_grad():  # random init leaves the norms at 1: perturb them so they matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf():
    return random_mistral()


def ids_for(batch=2, tokens=20, seed=0):
    return torch.randint(0, VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def test_mistral_is_registered_by_its_file_alone():
    assert CONVERTERS["mistral"].__module__ == "anee_lite.core.architectures.mistral"


def test_forward_and_cached_decoding_equal_huggingface(hf):
    model = UnrolledModel(hf)
    assert model.dims.architecture == "mistral" and model.dims.n_ctx == 24  # the sliding window
    ids = ids_for()
    with torch.no_grad():
        expected = hf(ids, use_cache=False).logits
    assert (model(ids).logits - expected).abs().max() <= TOL
    cache, steps = None, []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - expected).abs().max() <= TOL


def test_a_sequence_longer_than_the_window_is_refused_not_computed_differently(hf):
    with pytest.raises(ValueError, match="24"):
        UnrolledModel(hf)(ids_for(1, 25))


def test_pruning_equals_the_masked_forward(hf):
    model = UnrolledModel(hf)
    head_mask = torch.ones(3, 4)
    head_mask[:, [1, 3]] = 0  # one query head of each key/value group
    mlp_mask = torch.ones(3, 136)
    mlp_mask[:, :40] = 0
    pruned = prune(hf, skip_layers=[1], head_mask=head_mask, mlp_mask=mlp_mask)
    assert type(pruned).__name__ == "MistralForCausalLM" and pruned.config.num_hidden_layers == 2
    ids = ids_for()
    masked = model(ids, skip_layers=[1], head_mask=head_mask, mlp_mask=mlp_mask).logits
    with torch.no_grad():
        assert (pruned(ids, use_cache=False).logits - masked).abs().max() <= TOL
    assert (UnrolledModel(pruned)(ids).logits - masked).abs().max() <= TOL


def test_the_cost_model_and_simulator_take_its_counts_from_its_converter(hf):
    dims = UnrolledModel(hf).dims
    llama_like = converter_for("llama").eager_dispatches
    ops = pass_ops(dims, layers_run=dims.n_layers, context_len=10)
    assert sum(o.dispatches for o in ops) == sum(
        llama_like[o.name.split(".")[-1]] for o in ops)  # inherited from Llama, found through the registry
    assert simulate_decode(dims, PROFILES["t4"]).seconds_per_token > 0
    assert token_cost(dims, layers_run=dims.n_layers, context_len=10).macs > 0


def test_an_unknown_architecture_is_refused_everywhere_with_the_supported_list():
    import dataclasses

    from conftest import SMOLLM2_DIMS, random_llama

    falcon = dataclasses.replace(SMOLLM2_DIMS, architecture="falcon")
    for call in (lambda: pass_ops(falcon, layers_run=1, context_len=4),
                 lambda: token_cost(falcon, layers_run=1, context_len=4),
                 lambda: converter_for("falcon")):
        with pytest.raises(ValueError, match=r"'falcon' is not supported; supported architectures: \[.*'gpt2'.*"):
            call()
    hf = random_llama(n_layers=1)
    hf.config.model_type = "falcon"
    for call in (lambda: UnrolledModel(hf), lambda: prune(hf, skip_layers=[0])):
        with pytest.raises(ValueError, match="'falcon' is not supported"):
            call()
