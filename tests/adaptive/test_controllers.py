"""Exit controllers, lenses, probes, calibration and the evaluate CLI, on tiny random models."""

import itertools
import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import CharTokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from anee_lite import UnrolledModel, greedy_generate
from anee_lite.adaptive.calibration import build_replay, calibrate, pareto_front, sweep, text_chunks
from anee_lite.adaptive.controllers import CONTROLLER_NAMES, make_controller
from anee_lite.adaptive.evaluate import decode_teacher_forced, evaluate, format_result
from anee_lite.adaptive.probe import ExitProbe
from anee_lite.io.assets import SMOLLM2_EXIT_LAYERS, lens_path, probe_path
from anee_lite.lens import LogitLens, TunedLens

N_LAYERS = 6


class IdentityLens(LogitLens):
    """A lens whose logits are the residual itself, so hand-made residuals have known probabilities."""

    def __init__(self, n_layers=N_LAYERS):
        # d_model 3: the hand-made residuals below are rows of 3 token probabilities
        self.model = SimpleNamespace(dims=SimpleNamespace(n_layers=n_layers, d_model=3))
        self.layers = list(range(1, n_layers))

    def logits(self, layer, resid):
        return resid


def resid_from_probs(*rows):
    """[1, len(rows), V] residuals whose softmax is each row of probabilities."""
    return torch.tensor(rows).log()[None]


ALL = torch.ones(1, 2, dtype=torch.bool)
PROBS = resid_from_probs([0.7, 0.2, 0.1], [0.4, 0.35, 0.25])  # confident token, unsure token


def decisions(name, threshold, resid=PROBS, layer=1, **kwargs):
    c = make_controller(name, IdentityLens(), threshold, **kwargs)
    c.reset()
    return c(layer, resid, ALL)[0].tolist(), c


@pytest.mark.parametrize("name,threshold,expected", [
    ("confidence", 0.6, [True, False]), ("confidence", 0.75, [False, False]), ("confidence", 0.39, [True, True]),
    ("margin", 0.49, [True, False]), ("margin", 0.51, [False, False]), ("margin", 0.04, [True, True]),
    ("entropy", 0.81, [True, False]), ("entropy", 0.79, [False, False]), ("entropy", 1.1, [True, True]),
])
def test_lens_controllers_on_known_distributions(name, threshold, expected):
    # entropies: 0.7/0.2/0.1 -> 0.802 nats; 0.4/0.35/0.25 -> 1.081 nats
    stop, c = decisions(name, threshold)
    assert stop == expected
    assert c.checks.tolist() == [[1, 1]] and c.reads_lens and c.probe_macs_per_check == 0


def test_static_stops_at_first_allowed_layer_at_or_after_k():
    c = make_controller("static", IdentityLens(), 3, exit_layers_allowed=[2, 4])
    c.reset()
    stops = [bool(c(layer, PROBS, ALL)[0, 0]) for layer in range(1, N_LAYERS)]
    assert stops == [False, False, False, True, False]  # layer 3 is not allowed, 4 is the first
    assert c.charges(4) == {"lens_checks": 0, "lens_translator_macs": 0, "probe_checks": 0, "probe_macs_per_check": 0,
                            "readout_translator_macs": 0, "unembed": True}  # deciding is free


def test_saturation_compares_consecutive_residuals():
    c = make_controller("saturation", IdentityLens(), 0.99)
    c.reset()
    a = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    assert c(1, a, ALL).tolist() == [[False, False]]  # nothing to compare with yet
    b = torch.tensor([[[1.0, 0.01, 0.0], [0.0, 1.0, 0.0]]])  # token 0 barely turns, token 1 turns 90 degrees
    assert c(2, b, ALL).tolist() == [[True, False]]
    c.reset()  # a new forward call forgets the previous residual
    assert c(1, b, ALL).tolist() == [[False, False]]


def test_patience_needs_k_repeats_of_the_same_top1():
    c = make_controller("patience", IdentityLens(), 2)
    c.reset()
    same = resid_from_probs([0.7, 0.2, 0.1], [0.2, 0.7, 0.1])
    flipped = resid_from_probs([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])
    assert c(1, same, ALL).tolist() == [[False, False]]  # streak 0
    assert c(2, same, ALL).tolist() == [[False, False]]  # streak 1
    assert c(3, flipped, ALL).tolist() == [[True, False]]  # token 0 streak 2; token 1 changed, back to 0
    assert c.checks.tolist() == [[3, 3]]


def test_learned_probe_thresholds_its_probability():
    d = 3
    probe = ExitProbe({2: torch.zeros(d + 1)}, {2: torch.tensor(math.log(0.9 / 0.1))}, lens_kind="logit")
    stop, c = decisions("learned", 0.85, layer=2, probe=probe)
    assert stop == [True, True] and c.checks.tolist() == [[1, 1]]
    assert c.charges(2)["probe_checks"] == 1 and c.charges(2)["lens_checks"] == 0
    assert c.probe_macs_per_check == 4 * d + (d + 1)  # RMS norm and cosine reductions, then the dot product
    assert decisions("learned", 0.95, layer=2, probe=probe)[0] == [False, False]
    c.reset()
    assert c(1, PROBS, ALL).tolist() == [[False, False]]  # the probe has no layer 1: no exit, no check
    assert int(c.checks.sum()) == 0


def test_a_replaced_probe_weight_is_used_at_once():
    """The probe keeps its weights cut per layer and dtype; replacing one must not leave the old cut in use."""
    probe = ExitProbe({2: torch.zeros(5)}, {2: torch.tensor(0.0)}, "logit")
    resid, prev = torch.ones(1, 1, 4), torch.ones(1, 1, 4)
    assert probe.prob(2, resid, prev).item() == pytest.approx(0.5)
    probe.weights[2], probe.biases[2] = torch.zeros(5), torch.tensor(2.0)
    assert probe.prob(2, resid, prev).item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())


def test_probe_probability_is_the_logistic_regression_on_its_features():
    # prob() folds the normalisation into the dot product; it must equal the model it was trained as
    from anee_lite.adaptive.probe import probe_features

    g = torch.Generator().manual_seed(4)
    d = 16
    probe = ExitProbe({3: torch.randn(d + 1, generator=g)}, {3: torch.tensor(-0.3)})
    resid, prev = 5 * torch.randn(2, 7, d, generator=g), torch.randn(2, 7, d, generator=g)
    expected = torch.sigmoid(probe_features(resid, prev) @ probe.weights[3] + probe.biases[3])
    torch.testing.assert_close(probe.prob(3, resid, prev), expected)


def test_disallowed_layers_and_inactive_tokens_are_not_checked():
    c = make_controller("confidence", IdentityLens(), 0.0, exit_layers_allowed=[3])
    c.reset()
    assert c(1, PROBS, ALL).tolist() == [[False, False]]
    assert c(3, PROBS, torch.tensor([[True, False]])).tolist() == [[True, False]]
    assert c.checks.tolist() == [[1, 0]]


def test_calm_decaying_threshold_relaxes_with_position():
    c = make_controller("confidence", IdentityLens(), 0.7, decay_tau=4.0, decay_horizon=10)
    c.reset(torch.tensor([[0, 100]]))
    same = resid_from_probs([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])
    # position 0: 0.9 * 0.7 + 0.1 = 0.73 > 0.7; position 100: ~0.63 <= 0.7
    assert c(1, same, ALL).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="decay_tau"):
        make_controller("entropy", IdentityLens(), 1.0, decay_tau=1.0)


# --- through the real forward, generation and the wrapper --------------------------------------

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=N_LAYERS, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=50, max_position_embeddings=128, bos_token_id=0,
                      eos_token_id=1)
    return UnrolledModel(LlamaForCausalLM(cfg).eval())


@pytest.fixture(scope="module")
def probe_for_tiny():
    torch.manual_seed(1)
    return ExitProbe({l: 0.3 * torch.randn(33) for l in (2, 4)}, {l: torch.tensor(0.5) for l in (2, 4)}, "logit")


def controller_for(name, model, probe, threshold=None):
    return make_controller(name, LogitLens(model), threshold, probe=probe)


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_every_controller_runs_through_forward_and_generation(tiny, probe_for_tiny, name):
    c = controller_for(name, tiny, probe_for_tiny)
    ids = torch.randint(2, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    out = tiny.forward(ids, controller=c)
    allowed = set(c.exit_layers_allowed) | {N_LAYERS}
    assert set(out.stats.exit_layers.flatten().tolist()) <= allowed
    assert c.checks.shape == (2, 12)
    for L, n_checks in zip(out.stats.exit_layers.flatten().tolist(), c.checks.flatten().tolist()):
        assert n_checks == len(c.checked_layers(L))  # what the cost model charges is what ran
    gen = greedy_generate(tiny, ids[:, :4], max_new_tokens=4, controller=c)
    assert gen.new_tokens.shape == (2, 4)
    assert all(set(l.tolist()) <= allowed for l in gen.layers_per_token)


@pytest.mark.parametrize("name", [n for n in CONTROLLER_NAMES if n != "static"])
def test_the_first_token_never_stops_early_unless_asked(tiny, probe_for_tiny, name):
    """Position 0 is the attention sink: with a threshold at which every check stops, only it runs every layer."""
    ids = torch.randint(2, 50, (2, 10), generator=torch.Generator().manual_seed(3))
    always = -1e9 if make_controller(name, LogitLens(tiny), 0.5, probe=probe_for_tiny).higher_exits else 1e9
    for sink, expected_first in ((1, N_LAYERS), (0, None)):
        c = make_controller(name, LogitLens(tiny), always, probe=probe_for_tiny, sink_tokens=sink)
        exits = tiny.forward(ids, controller=c).stats.exit_layers  # [B, T]
        first_chance = exits[0, 1].item()  # the first layer this rule can stop at (patience needs a streak)
        assert first_chance < N_LAYERS and (exits[:, 1:] == first_chance).all()
        assert (exits[:, 0] == (expected_first or first_chance)).all(), (name, sink, exits[:, 0])
    # in cached decoding the sink is the first token of the sequence, not of each call
    c = make_controller(name, LogitLens(tiny), always, probe=probe_for_tiny)
    out = tiny.forward(ids[:, :3], controller=c, use_cache=True)
    step = tiny.forward(ids[:, 3:4], controller=c, past_key_values=out.past_key_values, use_cache=True)
    assert (out.stats.exit_layers[:, 0] == N_LAYERS).all() and (step.stats.exit_layers < N_LAYERS).all()


def test_static_has_no_sink_exception(tiny):
    # every token stops at the same layer, so no layer beyond it ever reads a frozen state
    exits = tiny.forward(torch.arange(2, 8)[None], controller=make_controller("static", LogitLens(tiny), 2)).stats.exit_layers
    assert exits.tolist() == [[2] * 6]


@pytest.mark.parametrize("sink_tokens", [-1, 1.5, "1", True])
def test_sink_tokens_must_be_a_count(tiny, sink_tokens):
    with pytest.raises((TypeError, ValueError), match="sink_tokens"):
        make_controller("confidence", LogitLens(tiny), 0.5, sink_tokens=sink_tokens)


@pytest.mark.parametrize("name", ["confidence", "learned", "saturation"])
def test_extreme_thresholds(tiny, probe_for_tiny, name):
    ids = torch.randint(2, 50, (1, 10), generator=torch.Generator().manual_seed(1))
    never = controller_for(name, tiny, probe_for_tiny, threshold=2.0)
    assert torch.equal(tiny.forward(ids, controller=never).logits, tiny.forward(ids).logits)
    always = controller_for(name, tiny, probe_for_tiny, threshold=-2.0)
    exits = tiny.forward(ids, controller=always).stats.exit_layers
    first = always.exit_layers_allowed[0] + (1 if name == "saturation" else 0)  # saturation needs a previous resid
    assert exits[0, 1:].max() == first and exits[0, 0] == N_LAYERS  # the first token is the attention sink


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_a_controller_calibrated_to_never_exit_is_switched_off(tiny, probe_for_tiny, name, monkeypatch):
    """Its "never" candidate makes no decision at all: no score is computed, no check is charged, the output
    is the full model's, even with CALM's decay (which would otherwise clamp the threshold to 1)."""
    c = controller_for(name, tiny, probe_for_tiny)
    scores = torch.linspace(0, 1, 40).reshape(N_LAYERS - 1, 8)  # replayed scores: only their range matters
    c.threshold = c.candidate_thresholds(scores)[-1]  # the safest candidate: never exit
    assert c.stops_nobody and c.charges(N_LAYERS)["lens_checks"] == c.charges(N_LAYERS)["probe_checks"] == 0

    def no_score(*args):
        raise AssertionError("a switched-off controller computed a score")

    monkeypatch.setattr(c, "score", no_score)
    ids = torch.randint(2, 50, (2, 9), generator=torch.Generator().manual_seed(4))
    out = tiny.forward(ids, controller=c)
    assert (out.stats.exit_layers == N_LAYERS).all() and (c.checks == 0).all()
    torch.testing.assert_close(out.logits, tiny.forward(ids).logits)
    if c.decays and c.higher_exits:  # the decay keeps "never" never, for a number and for per-row thresholds
        positions = torch.arange(9)[None]
        assert math.isinf(c.threshold_at(math.inf, positions, torch.zeros(1, 9)))
        rows = c.threshold_at(torch.tensor([[math.inf], [0.5]]), positions, torch.zeros(2, 9))
        assert torch.isinf(rows[0]).all() and (rows[1] <= 1).all()
    c.threshold = 0.5 if c.higher_exits else 3.0  # any finite rule decides again
    assert not c.stops_nobody


def test_tuned_lens_readout_is_used_for_exited_tokens(tiny):
    torch.manual_seed(2)
    d = tiny.dims.d_model
    lens = TunedLens(tiny, {2: 0.1 * torch.randn(d, d)}, {2: 0.1 * torch.randn(d)})
    ids = torch.randint(2, 50, (1, 8), generator=torch.Generator().manual_seed(2))
    out = tiny.forward(ids, controller=make_controller("static", lens, 2, exit_layers_allowed=[2]))
    resid2 = tiny.forward(ids, exit_layers=2).activations or tiny.forward(ids, exit_layers=2, return_resid=True)
    expected = tiny.logits_from_resid(lens.translate(2, resid2.resid_stack()[2]))
    torch.testing.assert_close(out.logits, expected)


def test_wrapper_generate_accepts_a_controller(tiny_gpt2_folder):
    from anee_lite import ANEEConfig, ANEEWrapper

    wrapper = ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)))
    c = make_controller("confidence", LogitLens(wrapper.model), 0.0)
    result = wrapper.generate(prompt="The quick brown fox", max_new_tokens=3, controller=c, return_result=True)
    assert all(int(l[0]) == 1 for l in result.layers_per_token)  # threshold 0: every token stops at layer 1


# --- calibration and evaluation --------------------------------------------------------------------

@pytest.fixture(scope="module")
def replay(tiny):
    ids = torch.randint(2, 50, (1, 64), generator=torch.Generator().manual_seed(3))
    return build_replay(tiny, list(ids.split(32, dim=1)))


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_calibration_meets_target_on_calibration_text(tiny, probe_for_tiny, replay, name):
    c = controller_for(name, tiny, probe_for_tiny)
    result = calibrate(replay, c, target_agreement=0.75)
    assert result.met and result.agreement >= 0.75 and c.threshold == result.threshold
    cheaper = [p for p in result.curve if p.cost_fraction < result.cost_fraction]
    assert all(p.agreement < 0.75 for p in cheaper)  # it is the cheapest threshold that meets the target
    front = pareto_front(result.curve)
    assert all(a.cost_fraction <= b.cost_fraction and a.agreement < b.agreement for a, b in itertools.pairwise(front))


def test_replay_matches_the_real_forward_for_a_static_exit(tiny):
    chunks = list(torch.randint(2, 50, (1, 24), generator=torch.Generator().manual_seed(3)).split(12, 1))
    c = make_controller("static", LogitLens(tiny), 3)
    (point,) = sweep(build_replay(tiny, chunks), c, thresholds=[3.0])
    run = decode_teacher_forced(tiny, chunks, c)
    real = float((run["logits"].argmax(-1) == run["full_logits"].argmax(-1)).float().mean())
    assert real == pytest.approx(point.agreement)
    assert set(run["exits"].tolist()) == {3}


def test_evaluate_reports_every_field(tiny):
    result = evaluate(tiny, CharTokenizer(48), "hello world, " * 6, "confidence",
                      calibration_text="calibrate on this text. " * 4, target_agreement=0.8, max_tokens=40, chunk=20)
    d = result.as_dict()
    for key in ("agreement", "cost_fraction", "mean_layers_fraction", "wall_time_ratio", "kl", "perplexity",
                "threshold", "tokens"):
        assert key in d
    assert d["tokens"] == 40 and 0 <= d["agreement"] <= 1 and d["wall_time_ratio"] > 0


def test_evaluate_under_catch_up_calibrates_and_reports_it(tiny):
    """The same evaluation with kv_fill='catch_up': calibrated and decoded under it; the table says so."""
    args = (tiny, CharTokenizer(48), "hello world, " * 6, "confidence")
    kwargs = {"calibration_text": "calibrate on this text. " * 4, "target_agreement": 0.8, "max_tokens": 40, "chunk": 20}
    caught = evaluate(*args, **kwargs, kv_fill="catch_up")
    assert caught.kv_fill == caught.calibration["kv_fill"] == "catch_up" and caught.kv_propagated == 0
    assert "kv_fill=catch_up" in format_result(caught) and "bytes fraction" in format_result(caught)
    assert f"bytes {caught.calibration['bytes_fraction']:.3f}" in format_result(caught)
    assert 0 < caught.bytes_fraction
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        evaluate(*args, max_tokens=40, chunk=20, kv_fill="frozen")


def test_evaluate_catches_up_unless_told_to_propagate(tiny):
    """The default is the fill under which a calibrated promise holds; propagation is one keyword away."""
    args = (tiny, CharTokenizer(48), "hello world, " * 6, "confidence")
    kwargs = {"calibration_text": "calibrate on this text. " * 4, "target_agreement": 0.8, "max_tokens": 40, "chunk": 20,
              "speed_check_tokens": 0}  # the fill is the question here, not this machine's timing
    default = evaluate(*args, **kwargs)
    caught = evaluate(*args, **kwargs, kv_fill="catch_up")
    assert default.kv_fill == default.calibration["kv_fill"] == "catch_up"
    assert (default.threshold, default.agreement, default.cost_fraction) == (caught.threshold, caught.agreement,
                                                                             caught.cost_fraction)
    propagated = evaluate(*args, **kwargs, kv_fill="propagate")
    assert propagated.kv_fill == propagated.calibration["kv_fill"] == "propagate" and propagated.kv_caught_up == 0


# --- saving and loading ------------------------------------------------------------------------------

def test_tuned_lens_round_trips_through_safetensors(tiny, tmp_path):
    d = tiny.dims.d_model
    lens = TunedLens(tiny, {1: torch.randn(d, d), 4: torch.randn(d, d)}, {1: torch.randn(d), 4: torch.randn(d)})
    lens.save(tmp_path / "lens.safetensors", model_name="tiny")
    back = TunedLens.load(tiny, tmp_path / "lens.safetensors")
    assert back.layers == [1, 4]
    for l in (1, 4):
        torch.testing.assert_close(back.weights[l], lens.weights[l].half().float())  # stored as fp16
        torch.testing.assert_close(back.biases[l], lens.biases[l])
    with pytest.raises(ValueError, match="not an exit-probe file"):
        ExitProbe.load(tmp_path / "lens.safetensors")
    assert (tmp_path / "lens.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_exit_probe_round_trips_through_safetensors(probe_for_tiny, tmp_path):
    probe_for_tiny.save(tmp_path / "probe.safetensors")
    back = ExitProbe.load(tmp_path / "probe.safetensors")
    assert back.layers == probe_for_tiny.layers and back.lens_kind == "logit"
    for l in back.layers:
        assert torch.equal(back.weights[l], probe_for_tiny.weights[l])
        assert torch.equal(back.biases[l], probe_for_tiny.biases[l])


@pytest.mark.skipif(not lens_path().exists(), reason="shipped smollm2 assets not built")
def test_shipped_smollm2_assets_have_the_right_shapes():
    from safetensors import safe_open

    assert lens_path().stat().st_size < 8_500_000  # 12 fp16 [576, 576] translators: the README says 8.0 MB
    assert probe_path().stat().st_size < 100_000
    with safe_open(str(lens_path()), framework="pt") as f:
        assert {tuple(f.get_slice(f"layer.{l}.weight").get_shape()) for l in SMOLLM2_EXIT_LAYERS} == {(576, 576)}
        assert {f.get_slice(f"layer.{l}.weight").get_dtype() for l in SMOLLM2_EXIT_LAYERS} == {"F16"}
    assert ExitProbe.load(probe_path()).layers == list(SMOLLM2_EXIT_LAYERS)


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("allowed, error", [
    ("12", TypeError),  # was read as the layers 1 and 2
    ([1.7], TypeError),  # was layer 1
    ([True], TypeError),  # was layer 1
    (2, TypeError),  # was "'int' object is not iterable"
    ([], ValueError),
])
@pytest.mark.parametrize("name", ["confidence", "learned"])
def test_exit_layers_allowed_must_be_integer_layers(tiny, name, allowed, error):
    from anee_lite.adaptive.probe import ExitProbe

    probe = ExitProbe({l: torch.zeros(tiny.dims.d_model + 1) for l in range(1, N_LAYERS)},
                      {l: torch.zeros(()) for l in range(1, N_LAYERS)}, lens_kind="logit") if name == "learned" else None
    with pytest.raises(error, match="exit_layers_allowed"):
        make_controller(name, LogitLens(tiny), probe=probe, exit_layers_allowed=allowed)
    tensor = make_controller(name, LogitLens(tiny), probe=probe, exit_layers_allowed=torch.tensor([2, 1, 2]))
    assert tensor.exit_layers_allowed == [1, 2]


def test_bad_input_gets_a_clear_error(tiny, replay):
    with pytest.raises(ValueError, match="controller must be one of"):
        make_controller("bogus", LogitLens(tiny))
    with pytest.raises(ValueError, match="needs a probe"):
        make_controller("learned", LogitLens(tiny))
    with pytest.raises(ValueError, match="exit_layers_allowed"):
        make_controller("confidence", LogitLens(tiny), exit_layers_allowed=[0, N_LAYERS])
    for target in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="target_agreement"):
            calibrate(replay, make_controller("static", LogitLens(tiny)), target)
    with pytest.raises(ValueError, match="text must be a non-empty"):
        text_chunks(CharTokenizer(48), "   ")
    with pytest.raises(ValueError, match="target_agreement"):
        evaluate(tiny, CharTokenizer(48), "some text", "static", target_agreement=1.01)


def run_cli(args, capsys):
    from anee_lite.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *args])
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--controller", "bogus"], "invalid choice: 'bogus'"),
    (["--controller", "static", "--target-agreement", "0"], "must be in (0, 1]"),
    (["--controller", "static", "--target-agreement", "1.5"], "must be in (0, 1]"),
    (["--controller", "static", "--text", "MISSING"], "--text: no such file"),
    (["--controller", "static", "--text", "EMPTY"], "--text: the file is empty"),
])
def test_cli_bad_input(args, message, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("Some text to read.")
    (tmp_path / "empty.txt").write_text("  \n")
    base = {"--text": str(text), "--model": "smollm2-135m", "--json": str(tmp_path / "out.json")}
    args = [{"MISSING": str(tmp_path / "nope.txt"), "EMPTY": str(tmp_path / "empty.txt")}.get(a, a) for a in args]
    for key, value in base.items():
        if key not in args:
            args += [key, value]
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_writes_json(tiny_gpt2_folder, tmp_path, capsys):
    from anee_lite.cli import main

    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 4)
    out = tmp_path / "out.json"
    assert main(["evaluate", "--model", str(tiny_gpt2_folder), "--text", str(text), "--calibration-text", str(text),
                 "--controller", "margin", "--target-agreement", "0.9", "--max-tokens", "24", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["controller"] == "margin" and data["tokens"] == 24 and data["calibration"]["target"] == 0.9
    assert "top-1 agreement" in capsys.readouterr().out


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
@pytest.mark.parametrize("threshold", ["0.5", True, float("nan"), [0.5], torch.tensor([0.5, 0.6])])
def test_thresholds_that_are_not_one_real_number_are_refused(tiny, probe_for_tiny, name, threshold):
    with pytest.raises((TypeError, ValueError), match="threshold"):
        controller_for(name, tiny, probe_for_tiny, threshold=threshold)


def test_a_lens_that_is_not_a_lens_is_refused(tiny):
    with pytest.raises(TypeError, match="lens must be an anee_lite.lens.LogitLens or TunedLens, got str"):
        make_controller("confidence", "logit", 0.5)
    with pytest.raises(TypeError, match="got UnrolledModel"):
        make_controller("confidence", tiny, 0.5)


def test_the_forward_reads_a_decision_only_where_the_controller_may_stop(tiny):
    """``may_stop_at(layer)`` False: the answer before that layer is not read (every call still happens)."""
    calls = []

    class StopsEverywhereButSaysLayer3:  # the controller protocol, plus may_stop_at
        def reset(self, positions):
            pass

        def __call__(self, layer, resid, active):
            calls.append(layer)
            return torch.ones_like(active)  # "stop" at every layer

        def exit_logits(self):
            return None

        def readout(self, resid, exit_layers):
            return resid

        def may_stop_at(self, layer):
            return layer == 3

    ids = torch.randint(2, 50, (2, 5), generator=torch.Generator().manual_seed(5))
    exits = tiny.forward(ids, controller=StopsEverywhereButSaysLayer3()).stats.exit_layers
    assert (exits == 3).all() and calls == [1, 2, 3]


@pytest.mark.parametrize("name", ["learned", "saturation", "confidence", "static"])
def test_the_decoding_fast_path_decides_as_decide_does(tiny, probe_for_tiny, name):
    """The sink mask made once per call stops exactly the tokens a fresh past_sink would."""
    c = controller_for(name, tiny, probe_for_tiny, threshold=0.3 if name != "static" else 3)
    ids = torch.randint(2, 50, (2, 8), generator=torch.Generator().manual_seed(6))
    positions = torch.arange(8).expand(2, 8)
    c.reset(positions)
    out = tiny.forward(ids, return_resid=True)
    for layer in c.exit_layers_allowed:
        resid = out.activations[f"blocks.{layer - 1}.hook_resid_post"]
        c.reset(positions)
        c.observe(layer - 1, out.activations[f"blocks.{layer - 2}.hook_resid_post"] if layer > 1 else resid)
        fast = c(layer, resid, torch.ones(2, 8, dtype=torch.bool))
        c.reset(positions)
        c.observe(layer - 1, out.activations[f"blocks.{layer - 2}.hook_resid_post"] if layer > 1 else resid)
        fresh = positions.clone()  # not the call's own positions: decide() builds the sink mask again
        assert torch.equal(fast, c.decide(c.score(layer, resid), positions=fresh)), layer
