"""The seed's API: ANEEConfig, ANEEWrapper(...)(ids, energy_budget), generate, the budget table, bad input."""

import math

import pytest
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

from anee_lite import ANEEConfig, ANEEWrapper, budget_exit_layer, budget_table
from anee_lite.io.loading import load_pretrained


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_folder):
    """A 2-layer random GPT-2 with a real byte-level tokenizer, loaded through the public loader."""
    hf, tok = load_pretrained(str(tiny_gpt2_folder))
    return ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)), hf_model=hf, tokenizer=tok)


@pytest.fixture(scope="module")
def twelve(tiny_gpt2_folder):
    """A 12-layer random GPT-2 (the seed's depth) sharing the tiny tokenizer."""
    from transformers import GPT2Config

    tok = AutoTokenizer.from_pretrained(tiny_gpt2_folder)
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=12, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    return ANEEWrapper(hf_model=GPT2LMHeadModel(cfg).eval(), tokenizer=tok)


@pytest.mark.parametrize("budget,layers", [(1.0, 11), (0.5, 5), (0.05, 2), (0.0, 2)])
def test_seed_budget_table_for_twelve_layers(budget, layers):
    assert budget_exit_layer(12, budget, min_layers=2, exit_budget_threshold=0.1) == layers


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.3, 0.5, 1.0])
def test_zero_threshold_runs_every_layer(budget):
    assert budget_exit_layer(12, budget, min_layers=2, exit_budget_threshold=0.0) == 12


def test_budget_follows_the_definition_by_hand():
    # 30 layers, budget 0.5: after 12 layers 0.1 is left (not < 0.1, run on), after 13 about 0.067 (exit)
    assert budget_exit_layer(30, 0.5, 2, 0.1) == 13
    # min_layers is a floor even with nothing left, and 0 means the embeddings alone predict
    assert budget_exit_layer(30, 0.0, 7, 0.1) == 7
    assert budget_exit_layer(30, 0.0, 0, 0.1) == 0
    assert [r["layers_executed"] for r in budget_table(12, (1.0, 0.5, 0.05, 0.0))] == [11, 5, 2, 2]


@pytest.mark.parametrize("budgets", [0.5, "0.5", None])
def test_budget_table_wants_a_list_of_budgets(budgets):
    with pytest.raises(TypeError, match="budgets must be a list of numbers"):  # "0.5" was read character by character
        budget_table(12, budgets)


def test_forward_stats_and_logits_follow_the_budget(twelve):
    ids = torch.randint(0, 200, (2, 6), generator=torch.Generator().manual_seed(0))
    out = twelve(ids, energy_budget=0.5)
    assert out["logits"].shape == (2, 6, twelve.model.dims.d_vocab)
    assert out["stats"]["layers_executed"] == 5 and out.stats.exited_early and out["stats"]["total_layers"] == 12
    by_hand = twelve.model.forward(ids, return_resid=True).activations["blocks.4.hook_resid_post"]
    assert torch.allclose(out["logits"], twelve.model.logits_from_resid(by_hand), atol=1e-5)
    full = twelve(ids, energy_budget=1.0, exit_budget_threshold=0.0)
    with torch.no_grad():
        assert (full["logits"] - twelve.hf_model(ids).logits).abs().max() <= 1e-4
    assert not full["stats"]["exited_early"]


def test_seed_quickstart_runs(tiny):
    prompt = "The future of artificial intelligence is"
    text = tiny.generate(tokenizer=tiny.tokenizer, prompt=prompt, max_new_tokens=20, energy_budget=0.05)
    assert text.startswith(prompt)
    assert tiny.generate(prompt=prompt, max_new_tokens=5) == tiny.generate(tokenizer=tiny.tokenizer, prompt=prompt,
                                                                          max_new_tokens=5)


def hf_greedy(hf, tok, prompt, n):
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                          pad_token_id=tok.pad_token_id)
    return tok.decode(out[0], skip_special_tokens=True)


@pytest.mark.parametrize("use_cache", [True, False])
def test_full_depth_generate_equals_huggingface(tiny, use_cache):
    for prompt in ("Early exits", "The quick brown fox jumps over"):
        ours = tiny.generate(prompt=prompt, max_new_tokens=12, exit_budget_threshold=0.0, use_cache=use_cache)
        assert ours == hf_greedy(tiny.hf_model, tiny.tokenizer, prompt, 12)


@pytest.mark.slow
def test_smollm2_full_depth_generate_equals_huggingface(smollm2_hf):
    hf, tok = smollm2_hf
    model = ANEEWrapper(ANEEConfig(model_name="smollm2-135m"), hf_model=hf, tokenizer=tok)
    prompt = "The future of artificial intelligence is"
    assert model.generate(prompt=prompt, max_new_tokens=20, exit_budget_threshold=0.0) == hf_greedy(hf, tok, prompt, 20)


def test_generation_stops_at_eos(tiny):
    eos = tiny.tokenizer.eos_token_id
    lm_bias = torch.full((tiny.model.dims.d_vocab,), -1e4)
    lm_bias[eos] = 1e4  # make EOS the argmax everywhere: generation must stop after one token
    original = tiny.model.arch.unembed
    tiny.model.arch.unembed = lambda x: original(x) + lm_bias
    try:
        result = tiny.generate(prompt="Early exits", max_new_tokens=10, return_result=True)
    finally:
        tiny.model.arch.unembed = original
    assert result.new_tokens.tolist() == [[eos]]


def test_a_batch_of_prompts_matches_each_prompt_alone(tiny):
    prompts = ["Early exits", "The quick brown fox jumps over the lazy"]
    batch = tiny.generate(prompt=prompts, max_new_tokens=8, energy_budget=1.0, exit_budget_threshold=0.0)
    assert batch == [tiny.generate(prompt=p, max_new_tokens=8, exit_budget_threshold=0.0) for p in prompts]


def test_result_reports_layers_per_token(twelve):
    result = twelve.generate(prompt="Early exits", max_new_tokens=4, energy_budget=0.5, return_result=True)
    assert [int(t) for t in torch.cat(result.layers_per_token)] == [5] * len(result.layers_per_token)
    assert len(result.step_times) == len(result.layers_per_token)


BAD_CONFIGS = [
    ({"energy_budget": -0.1}, ValueError, "energy_budget"),
    ({"energy_budget": 1.5}, ValueError, "energy_budget"),
    ({"energy_budget": math.nan}, ValueError, "energy_budget"),
    ({"energy_budget": "high"}, TypeError, "energy_budget"),
    ({"min_layers": -1}, ValueError, "min_layers"),
    ({"exit_budget_threshold": 1.2}, ValueError, "exit_budget_threshold"),
    ({"exit_budget_threshold": -0.5}, ValueError, "exit_budget_threshold"),
]


@pytest.mark.parametrize("kwargs,error,name", BAD_CONFIGS)
def test_bad_config_is_refused_with_a_clear_message(kwargs, error, name):
    with pytest.raises(error, match=name):
        ANEEConfig(**kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"energy_budget": -0.01}, ValueError, r"energy_budget must be in \[0.0, 1.0\]"),
    ({"energy_budget": 1.01}, ValueError, "energy_budget"),
    ({"energy_budget": float("nan")}, ValueError, "energy_budget"),
    ({"energy_budget": None, "min_layers": 13}, ValueError, r"min_layers must be in \[0, 12\]"),
    ({"energy_budget": 0.5, "exit_budget_threshold": 2.0}, ValueError, "exit_budget_threshold"),
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"prompt": ""}, ValueError, "prompt"),
    ({"prompt": "word " * 80}, ValueError, "context window"),
    ({"prompt": "word " * 8, "max_new_tokens": 60}, ValueError, "max_new_tokens"),
])
def test_bad_generate_arguments_are_refused(twelve, kwargs, error, match):
    args = {"prompt": "Early exits", "max_new_tokens": 3} | kwargs
    with pytest.raises(error, match=match):
        twelve.generate(**args)


def test_min_layers_deeper_than_the_model_is_refused_at_construction(twelve):
    with pytest.raises(ValueError, match=r"min_layers must be in \[0, 12\]"):
        ANEEWrapper(ANEEConfig(min_layers=13), hf_model=twelve.hf_model, tokenizer=twelve.tokenizer)


@pytest.mark.parametrize("ids,mask,match", [
    (torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), r"attention_mask must have shape \[2, 5\]"),
    (torch.zeros(2, 5, dtype=torch.long), torch.full((2, 5), 2), "only 0"),
    (torch.zeros(5, dtype=torch.long), None, r"input_ids must have shape \[batch, tokens\]"),
    (torch.zeros(1, 5), None, "input_ids must hold integers"),
    (torch.full((1, 5), 10**6), None, "input_ids must be token ids"),
    (torch.zeros(1, 70, dtype=torch.long), None, "context window"),
    (torch.zeros(1, 0, dtype=torch.long), None, "at least one token"),
])
def test_bad_forward_inputs_are_refused(twelve, ids, mask, match):
    with pytest.raises((ValueError, TypeError), match=match):
        twelve(ids, energy_budget=0.5, attention_mask=mask)


def test_unknown_model_names_the_offline_alias():
    with pytest.raises(ValueError, match="smollm2-135m"):
        ANEEWrapper(ANEEConfig(model_name="no-such-model-anywhere-xyz"))


# --- the caller's model is theirs ---------------------------------------------------------------------------------


def test_wrapping_a_callers_model_leaves_it_as_it_was(tiny_gpt2_folder, tmp_path):
    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_folder).train()  # requires_grad=True, training: as users have it
    before = {name: (p, p.data_ptr(), p.requires_grad) for name, p in hf.named_parameters()}
    wrapper = ANEEWrapper(hf_model=hf)
    assert hf.training
    assert {name: (p, p.data_ptr(), p.requires_grad) for name, p in hf.named_parameters()} == before
    hf.save_pretrained(tmp_path)
    ids = torch.randint(0, 200, (1, 6), generator=torch.Generator().manual_seed(0))
    logits = wrapper(ids).logits
    hf.half()
    assert torch.equal(wrapper(ids).logits, logits)


def test_share_weights_shares_the_callers_memory(tiny_gpt2_folder):
    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_folder)
    wrapper = ANEEWrapper(hf_model=hf, share_weights=True)
    theirs = {p.untyped_storage().data_ptr() for p in hf.parameters()}
    arch = wrapper.model.arch
    assert {t.untyped_storage().data_ptr() for t in (arch.W_U, arch.W_E, arch.blocks[0].W_QKV)} <= theirs


def test_share_weights_without_a_model_is_refused():
    with pytest.raises(ValueError, match="share_weights"):
        ANEEWrapper(ANEEConfig(model_name="smollm2-135m"), share_weights=True)


def test_a_zero_budget_with_min_layers_zero_predicts_from_the_embeddings(twelve):
    ids = torch.randint(0, 200, (1, 5), generator=torch.Generator().manual_seed(2))
    out = twelve(ids, energy_budget=0.0, min_layers=0)
    assert out.stats.layers_executed == 0
    embedded = twelve.model.arch.embed(ids, torch.arange(5)[None])
    assert torch.allclose(out.logits, twelve.model.logits_from_resid(embedded), atol=1e-6)
    result = twelve.generate(prompt="Early exits", max_new_tokens=2, energy_budget=0.0, min_layers=0,
                             return_result=True)
    assert [int(t) for t in torch.cat(result.layers_per_token)] == [0, 0]


def test_every_budget_knob_defaults_to_the_config():
    """The seed's defaults live once (anee_lite.config); every function taking the knobs uses them."""
    import inspect

    from anee_lite.adaptive.evaluate import quality_vs_budget
    from anee_lite.notebook.early_exit_budget import budget_explorer, plot_budget_layers

    config = ANEEConfig()
    for fn in (budget_exit_layer, budget_table, quality_vs_budget, plot_budget_layers, budget_explorer):
        params = inspect.signature(fn).parameters
        assert params["min_layers"].default == config.min_layers, fn.__name__
        if "exit_budget_threshold" in params:
            assert params["exit_budget_threshold"].default == config.exit_budget_threshold, fn.__name__


def test_an_activation_sparsity_fraction_uses_calibrated_thresholds(tiny):
    """Calibrated once on the shipped calibration text; generate and the call both use those thresholds."""
    from anee_lite.io.texts import eval_ids
    from anee_lite.sparsity import calibrate_activation_thresholds

    got = tiny.activation_thresholds(0.5)
    expected = calibrate_activation_thresholds(tiny.model, eval_ids(tiny.tokenizer, "python_docs_calibration", 1024),
                                               0.5)
    assert got.fraction == 0.5 and torch.allclose(got.thresholds, expected.thresholds)
    prompt = "The cat sat on the"
    assert tiny.generate(prompt=prompt, max_new_tokens=6, masks={"activation_sparsity": 0.5}) == tiny.generate(
        prompt=prompt, max_new_tokens=6, masks={"activation_sparsity": got})
    ids = tiny.encode(prompt)[0]
    assert torch.equal(tiny(ids, activation_sparsity=0.5)["logits"], tiny(ids, activation_sparsity=got)["logits"])
    assert tiny(ids, activation_sparsity=0.0)["logits"].equal(tiny(ids)["logits"])


@pytest.mark.parametrize("fraction, error", [(1.0, ValueError), (-0.2, ValueError), ("half", TypeError),
                                             (float("nan"), ValueError), (True, TypeError)])
def test_bad_activation_sparsity_fractions_are_refused(tiny, fraction, error):
    with pytest.raises(error, match="activation_sparsity"):
        tiny.generate(prompt="a", max_new_tokens=1, masks={"activation_sparsity": fraction})
    with pytest.raises(error, match="activation_sparsity"):
        tiny.activation_thresholds(fraction)


def test_shipped_activation_quantiles_fit_smollm2_and_nothing_else(tmp_path, tiny):
    from anee_lite.io.assets import activation_quantiles_path
    from anee_lite.sparsity.calibrate import load_quantiles, save_quantiles

    shipped = activation_quantiles_path()
    assert shipped.exists()
    with pytest.raises(ValueError, match="other sizes|quantiles"):
        load_quantiles(shipped, tiny.model)  # a 2-layer GPT-2 is not SmolLM2
    table = torch.rand(101, tiny.n_layers, 4).sort(dim=0).values
    path = tmp_path / "q.safetensors"
    save_quantiles(path, table, tiny.model)
    assert torch.equal(load_quantiles(path, tiny.model), table)
    save_quantiles(path, table * float("nan"), tiny.model)
    with pytest.raises(ValueError, match="damaged"):
        load_quantiles(path, tiny.model)
    for junk in (b"", b"not a safetensors file"):
        path.write_bytes(junk)
        with pytest.raises(ValueError, match=str(path)):
            load_quantiles(path, tiny.model)


@pytest.mark.slow
def test_smollm2_shipped_thresholds_zero_about_that_share_of_held_out_inputs(smollm2_hf):
    from anee_lite.core.masks import LINEAR_INPUT_HOOKS, keep_inputs
    from anee_lite.io.texts import eval_ids

    hf, tok = smollm2_hf
    wrapper = ANEEWrapper(ANEEConfig(model_name="smollm2-135m"), hf_model=hf, tokenizer=tok)
    spec = wrapper.activation_thresholds(0.5)
    acts = wrapper.model(eval_ids(tok, "python_docs_heldout", 128), return_linear_inputs=True).activations
    shares = [1 - keep_inputs(acts[f"blocks.{l}.{h}"], l, s, spec).float().mean().item()
              for l in range(wrapper.n_layers) for s, h in enumerate(LINEAR_INPUT_HOOKS)]
    assert 0.4 <= sum(shares) / len(shares) <= 0.6  # calibrated on other text: close to, not exactly, 0.5


def test_generate_passes_kv_fill_on(twelve):
    """The user's path: a controller's exits caught up beside later tokens, and a bad kv_fill refused up front."""
    step = {"n": 0}

    def every_other(layer, resid, active):  # odd steps stop at layer 3, even ones run every layer
        if layer == 1:
            step["n"] += 1
        return torch.full_like(active, layer == 3 and step["n"] % 2 == 0)

    result = twelve.generate(prompt="Early exits", max_new_tokens=5, controller=every_other, kv_fill="catch_up",
                             return_result=True)
    assert result.kv_caught_up > 0 and result.kv_propagated == 0
    step["n"] = 0
    default = twelve.generate(prompt="Early exits", max_new_tokens=5, controller=every_other, return_result=True)
    assert torch.equal(default.sequences, result.sequences)  # with a controller, catch-up unless told otherwise
    assert (default.kv_caught_up, default.kv_propagated) == (result.kv_caught_up, 0)
    step["n"] = 0
    propagated = twelve.generate(prompt="Early exits", max_new_tokens=5, controller=every_other,
                                 kv_fill="propagate", return_result=True)
    assert propagated.kv_propagated > 0 and propagated.kv_caught_up == 0
    budget = twelve.generate(prompt="Early exits", max_new_tokens=5, energy_budget=0.5, return_result=True)
    assert budget.kv_caught_up == 0  # a static exit: nothing to catch up, the seed's path as it was
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        twelve.generate(prompt="Early exits", max_new_tokens=0, kv_fill="exact")
