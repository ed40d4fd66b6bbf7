"""The forward and generation under faults and odd input: interrupted calls, foreign caches, bad controllers."""

import threading

import pytest
import torch
from conftest import VOCAB, random_gpt2, random_llama

from anee_lite import ANEEConfig, KVCache, UnrolledModel, greedy_generate

MODELS = {"gpt2": lambda: random_gpt2(n_layer=5, n_positions=64), "llama": lambda: random_llama(n_layers=5)}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return UnrolledModel(MODELS[request.param]())


def cache_state(cache: KVCache):
    """Everything a cache holds, cloned, to compare before and after."""
    def clone(t):
        return None if t is None else t.clone()

    return ([clone(k) for k in cache.keys], [clone(v) for v in cache.values], clone(cache.resid),
            clone(cache.positions), clone(cache.attention_mask), cache.propagated, len(cache))


def same_state(a, b) -> bool:
    def eq(x, y):
        if isinstance(x, list):
            return len(x) == len(y) and all(eq(p, q) for p, q in zip(x, y))
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return x is not None and y is not None and x.shape == y.shape and torch.equal(x, y)
        return x == y

    return all(eq(x, y) for x, y in zip(a, b))


class Interrupt:
    """A controller that exits some tokens early, then raises KeyboardInterrupt before ``at_layer`` (Ctrl-C)."""

    def __init__(self, at_layer):
        self.at_layer = at_layer

    def __call__(self, layer, resid, active):
        if layer == self.at_layer:
            raise KeyboardInterrupt
        stop = torch.zeros_like(active)
        stop[:, 1::2] = layer == 2  # every other token stops at layer 2: later layers need propagation
        return stop


def prefill(model, seed=0):
    """A cache holding 2 x 7 tokens with mixed exits (some layers lag behind)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :2] = 0
    exits = torch.randint(1, model.dims.n_layers + 1, (2, 7), generator=g)
    out = model(ids[:, :7], mask[:, :7], exit_layers=exits, use_cache=True)
    return ids, mask, out.past_key_values


@pytest.mark.parametrize("at_layer", [1, 3])
@pytest.mark.parametrize("new_tokens", [1, 2])
def test_interrupted_cached_forward_leaves_the_cache_unchanged(model, at_layer, new_tokens):
    ids, mask, cache = prefill(model, seed=at_layer)
    before = cache_state(cache)
    end = 7 + new_tokens
    with pytest.raises(KeyboardInterrupt):
        model(ids[:, 7:end], mask[:, :end], controller=Interrupt(at_layer), past_key_values=cache, use_cache=True)
    assert same_state(cache_state(cache), before)
    # ...and the cache still works: the next call gives what an uninterrupted cache gives.
    _, _, fresh = prefill(model, seed=at_layer)
    got = model(ids[:, 7:end], mask[:, :end], past_key_values=cache, use_cache=True).logits
    want = model(ids[:, 7:end], mask[:, :end], past_key_values=fresh, use_cache=True).logits
    assert torch.equal(got, want)


def test_refused_call_leaves_the_cache_unchanged(model):
    ids, mask, cache = prefill(model)
    before = cache_state(cache)
    with pytest.raises(ValueError):
        model(ids[:, 7:8], mask[:, :7], past_key_values=cache, use_cache=True)  # mask one column short
    assert same_state(cache_state(cache), before)


def test_truncate_equals_a_cache_that_never_saw_the_dropped_tokens(model):
    ids, mask, cache = prefill(model)
    model(ids[:, 7:9], mask, exit_layers=torch.tensor([[1, 2], [5, 3]]), past_key_values=cache, use_cache=True)
    cache.truncate(7)
    assert len(cache) == 7 and all(cache.layer_length(l) <= 7 for l in range(model.dims.n_layers))
    _, _, fresh = prefill(model)
    got = model(ids[:, 7:9], mask, past_key_values=cache, use_cache=True).logits
    want = model(ids[:, 7:9], mask, past_key_values=fresh, use_cache=True).logits
    assert torch.allclose(got, want, atol=1e-6)  # lazily refilled K/V: same values, maybe another summation order
    cache.truncate(0)
    assert len(cache) == 0 and all(k is None for k in cache.keys)


@pytest.mark.parametrize("bad", [-1, 8, 2.0, True, "3", None])
def test_truncate_refuses_what_it_cannot_do(model, bad):
    _, _, cache = prefill(model)
    with pytest.raises((ValueError, TypeError), match="length"):
        cache.truncate(bad)
    assert len(cache) == 7


def test_a_new_model_at_a_freed_models_address_refuses_its_cache(monkeypatch):
    """Python gives a freed model's id() to a later object; the cache's owner must not be an id()."""
    import anee_lite.core.model
    import anee_lite.core.validation

    for module in (anee_lite.core.model, anee_lite.core.validation):
        monkeypatch.setattr(module, "id", lambda obj: 4242, raising=False)  # every model at one address
    hf = random_gpt2(n_layer=2, n_positions=32)
    ids = torch.randint(0, VOCAB, (1, 4))
    first = UnrolledModel(hf)
    cache = first(ids, use_cache=True).past_key_values
    del first
    other = UnrolledModel(random_gpt2(n_layer=2, n_positions=32, seed=1))  # same shapes, other weights
    with pytest.raises(ValueError, match="past_key_values must be a cache returned by this same model"):
        other(ids[:, :1], past_key_values=cache, use_cache=True)


@pytest.mark.parametrize("returned,error,match", [
    (lambda active: None, TypeError, "controller must return a bool tensor"),
    (lambda active: 0.5, TypeError, "controller must return a bool tensor"),
    (lambda active: [[False]], TypeError, "controller must return a bool tensor"),
    (lambda active: torch.zeros(active.shape), TypeError, "torch.float32"),
    (lambda active: torch.zeros(active.shape, dtype=torch.long), TypeError, "torch.int64"),
    (lambda active: torch.zeros(active.shape[1], dtype=torch.bool), ValueError, "would be broadcast"),
    (lambda active: torch.zeros(1, 1, dtype=torch.bool), ValueError, "would be broadcast"),
    (lambda active: torch.zeros(*active.shape, 1, dtype=torch.bool), ValueError, "shape"),
])
def test_a_controller_returning_the_wrong_thing_is_refused(model, returned, error, match):
    ids = torch.randint(0, VOCAB, (2, 5))
    with pytest.raises(error, match=match):
        model(ids, controller=lambda layer, resid, active: returned(active))


def test_a_non_callable_controller_is_refused(model):
    with pytest.raises(TypeError, match="controller must"):
        model(torch.zeros(1, 3, dtype=torch.long), controller=3)


def test_one_controller_used_by_two_threads_at_once_is_refused(model):
    inside, release = threading.Event(), threading.Event()

    def slow(layer, resid, active):
        inside.set()
        release.wait(10)
        return torch.zeros_like(active)

    ids = torch.randint(0, VOCAB, (1, 4))
    worker = threading.Thread(target=model, args=(ids,), kwargs={"controller": slow})
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(ValueError, match="already running in another forward call"):
            model(ids, controller=slow)
    finally:
        release.set()
        worker.join()
    model(ids, controller=slow)  # free again once the other call is done


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int16])
def test_integer_ids_of_any_signed_width_give_the_same_logits(model, dtype):
    ids = torch.randint(0, VOCAB, (2, 6))
    assert torch.equal(model(ids.to(dtype)).logits, model(ids).logits)


def test_odd_but_valid_tensors_give_the_same_logits(model):
    ids = torch.randint(0, VOCAB, (6, 2))
    mask = torch.ones(6, 2, dtype=torch.long)
    # non-contiguous ids and mask (a transpose), a bool mask
    assert torch.equal(model(ids.t(), mask.t()).logits, model(ids.t().contiguous()).logits)
    assert torch.equal(model(ids.t(), mask.t().bool()).logits, model(ids.t().contiguous()).logits)
    # a float mask of exact 0s and 1s, as HF accepts, reads like the integer one
    padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert torch.equal(model(ids[:3].t(), padded.float()).logits, model(ids[:3].t(), padded).logits)
    # a 0-d integer tensor of exit layers is one depth for every token, as the int is
    assert torch.equal(model(ids.t(), exit_layers=torch.tensor(2)).logits, model(ids.t(), exit_layers=2).logits)


@pytest.mark.parametrize("ids,mask,error,match", [
    (torch.ones(1, 3, dtype=torch.bool), None, TypeError, "input_ids must hold integers"),
    ([[1, 2, 3]], None, TypeError, "input_ids must be a torch.Tensor"),
    (torch.ones(1, 3, dtype=torch.long), [[1, 1, 1]], TypeError, "attention_mask must be a torch.Tensor"),
    (torch.ones(1, 3, dtype=torch.long), torch.full((1, 3), 0.5), ValueError, "only 0"),
    (torch.ones(1, 3, dtype=torch.long), torch.full((1, 3), float("nan")), ValueError, "only 0"),
    (torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.complex64), TypeError, "must hold integers"),
    (torch.ones(1, 3, dtype=torch.long), torch.full((1, 3), -1), ValueError, "only 0"),
    (torch.ones(1, 3, dtype=torch.long), torch.ones(3, dtype=torch.long), ValueError, "attention_mask must have shape"),
    (torch.ones(1, 1, 3, dtype=torch.long), None, ValueError, r"\[batch, tokens\]"),
    (torch.full((1, 3), -5), None, ValueError, "token ids in"),
    (torch.ones(1, 3, dtype=torch.uint8), None, TypeError, "input_ids must hold a signed integer dtype"),
    (torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3), ValueError, "attention_mask holds no real token"),
    (torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool), ValueError, "attention_mask holds no"),
    (torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [0, 0, 0]]), ValueError,
     r"attention_mask rows \[1\] hold no real token"),
    (torch.ones(3, 2, dtype=torch.long), torch.tensor([[0, 0], [0, 1], [0, 0]]), ValueError,
     r"attention_mask rows \[0, 2\] hold no real token"),
])
def test_bad_ids_and_masks_are_refused(model, ids, mask, error, match):
    with pytest.raises(error, match=match):
        model(ids, mask)


def test_ids_of_a_dtype_narrower_than_the_vocabulary_are_refused():
    """300 ids do not fit int8: id 300 would have arrived as 44, a valid-looking id of another token."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    wide = UnrolledModel(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16,
                                                    vocab_size=300)).eval())
    ids = torch.tensor([[300 % 256, 7]])
    for dtype in (torch.int8, torch.uint8):
        with pytest.raises(TypeError, match=r"input_ids must hold a signed integer dtype .* d_vocab - 1 = 299"):
            wide(ids.to(dtype))
    assert torch.equal(wide(ids.to(torch.int16)).logits, wide(ids).logits)  # int16 holds 0..299


@pytest.mark.parametrize("flag", ["use_cache", "return_resid", "return_patterns"])
def test_flags_must_be_bools(model, flag):
    with pytest.raises(TypeError, match=flag):
        model(torch.ones(1, 2, dtype=torch.long), **{flag: "no"})


def test_a_given_cache_grows_unless_use_cache_false_which_is_refused(model):
    ids = torch.randint(0, VOCAB, (1, 4))
    cache = model(ids, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="use_cache=False with past_key_values"):
        model(ids[:, :1], past_key_values=cache, use_cache=False)
    assert len(cache) == 4  # refused before any work: the cache did not grow
    out = model(ids[:, :1], past_key_values=cache)  # use_cache left out: the given cache is continued
    assert out.past_key_values is cache and len(cache) == 5
    assert model(ids).past_key_values is None  # no cache given, none asked for


def test_a_left_padded_row_may_start_with_a_chunk_of_padding_only(model):
    """Chunked prefill of a left-padded batch: one row's first chunk is padding, the batch's mask is not."""
    ids = torch.randint(0, VOCAB, (2, 4))
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    first = model(ids[:, :2], mask[:, :2], use_cache=True)
    whole = model(ids, mask)
    rest = model(ids[:, 2:], mask, past_key_values=first.past_key_values)
    assert torch.allclose(rest.logits, whole.logits[:, 2:], atol=1e-5)


# --- generation --------------------------------------------------------------------------------------------


def test_right_padded_prompts_are_refused_with_a_hint(model):
    ids = torch.randint(2, VOCAB, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\] end in padding.*pad on the left"):
        greedy_generate(model, ids, mask, max_new_tokens=2)


def test_a_prompt_row_without_any_token_is_refused(model):
    ids = torch.randint(2, VOCAB, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\] hold no real token"):
        greedy_generate(model, ids, mask, max_new_tokens=2)


def test_left_padding_still_generates_like_the_prompt_alone(model):
    ids = torch.randint(2, VOCAB, (1, 5))
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    alone = greedy_generate(model, ids, max_new_tokens=4).new_tokens
    assert torch.equal(greedy_generate(model, padded, mask, max_new_tokens=4).new_tokens, alone)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens"),
    ({"max_new_tokens": "3"}, TypeError, "max_new_tokens"),
    ({"max_new_tokens": 1000}, ValueError, "context window"),
    ({"eos_token_id": -1}, ValueError, "eos_token_id"),
    ({"eos_token_id": [1, 2]}, TypeError, "eos_token_id"),
    ({"eos_token_id": VOCAB}, ValueError, rf"eos_token_id must be in \[0, {VOCAB - 1}\]"),
    ({"pad_token_id": VOCAB + 5}, ValueError, rf"pad_token_id must be in \[0, {VOCAB - 1}\]"),
    ({"pad_token_id": 1.0}, TypeError, "pad_token_id"),
    ({"use_cache": "yes"}, TypeError, "use_cache"),
])
def test_bad_generation_arguments_are_refused_before_any_step(model, kwargs, error, match):
    args = {"max_new_tokens": 2} | kwargs
    with pytest.raises(error, match=match):
        greedy_generate(model, torch.ones(1, 3, dtype=torch.long), **args)


# --- config --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device,error", [("banana", ValueError), ("", ValueError), (3, TypeError),
                                          ("cuda:99", ValueError), ("gpu", ValueError)])
def test_unknown_or_unavailable_devices_are_refused(device, error):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a very large machine")
    with pytest.raises(error, match="device"):
        ANEEConfig(device=device)


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device='cuda'.*use 'cpu'"):
        ANEEConfig(device="cuda")


def test_valid_devices_are_accepted():
    assert ANEEConfig(device="cpu").device == "cpu"
    assert ANEEConfig(device=torch.device("cpu")).device == torch.device("cpu")


def test_a_controller_or_draft_lens_built_for_another_model_is_refused():
    from anee_lite.adaptive import make_controller
    from anee_lite.lens import LogitLens

    a, b = UnrolledModel(random_llama(n_layers=4, seed=0)), UnrolledModel(random_llama(n_layers=4, seed=1))
    ids = torch.randint(2, VOCAB, (1, 6))
    controller = make_controller("confidence", LogitLens(a), 0.0, sink_tokens=0)  # would exit everything at layer 1
    with pytest.raises(ValueError, match="controller was built for another UnrolledModel"):
        b(ids, controller=controller)
    with pytest.raises(ValueError, match="controller was built for another UnrolledModel"):
        greedy_generate(b, ids, max_new_tokens=2, controller=controller)
    with pytest.raises(ValueError, match="draft_lens was built for another UnrolledModel"):
        greedy_generate(b, ids, max_new_tokens=2, draft_layers=2, draft_tokens=2, draft_lens=LogitLens(a))
    assert torch.equal(a(ids, controller=controller).stats.exit_layers, torch.ones(1, 6, dtype=torch.long))


def test_attention_patterns_too_big_for_memory_are_refused_before_the_forward(model, monkeypatch):
    from anee_lite.core import validation

    dims = model.dims
    per_token_pair = dims.n_layers * dims.n_heads
    monkeypatch.setattr(validation, "MAX_PATTERN_VALUES", per_token_pair * 8 * 8)  # room for 8 x 8 tokens
    assert len(model(torch.randint(0, VOCAB, (1, 8)), return_patterns=True).activations) == dims.n_layers
    with pytest.raises(ValueError, match="return_patterns over 1 x 9 tokens .* pass about 8 tokens"):
        model(torch.randint(0, VOCAB, (1, 9)), return_patterns=True)
    model(torch.randint(0, VOCAB, (1, 40)))  # without patterns any length that fits n_ctx runs


@pytest.mark.parametrize("max_new_tokens", [0, 2])
@pytest.mark.parametrize("kwargs, error, match", [
    ({"exit_layers": 99}, ValueError, "exit_layers must be in"),
    ({"controller": 5}, TypeError, "controller must implement"),
    ({"masks": ["skip_layers"]}, TypeError, "masks must be a dict"),  # was "dictionary update sequence element"
    ({"masks": {"skip_layers": [99]}}, ValueError, "skip_layers must hold layer indices"),
])
def test_generation_checks_its_knobs_before_any_step(max_new_tokens, kwargs, error, match):
    # with max_new_tokens=0 the forward never ran, so nothing was checked and the bad value passed
    model = UnrolledModel(random_llama(n_layers=3))
    with pytest.raises(error, match=match):
        greedy_generate(model, torch.tensor([[5, 6, 7]]), max_new_tokens=max_new_tokens, **kwargs)


def test_generation_takes_scalar_exits_and_masks_of_any_count():
    model = UnrolledModel(random_llama(n_layers=3))
    ids = torch.tensor([[5, 6, 7]])
    plain = greedy_generate(model, ids, max_new_tokens=2, exit_layers=2, masks={"skip_layers": [0]})
    for exit_layers in (torch.tensor(2), 2):
        again = greedy_generate(model, ids, max_new_tokens=2, exit_layers=exit_layers, masks={"skip_layers": (0,)})
        assert torch.equal(again.sequences, plain.sequences)
