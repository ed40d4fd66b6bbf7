"""Replay, calibration, lens/probe training and acceptance_by_depth refuse bad arguments with a named error."""

import math

import pytest
import torch
from conftest import VOCAB, CharTokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite.adaptive import (
    ExitProbe,
    acceptance_by_depth,
    build_controller,
    build_replay,
    calibrate,
    calibrate_by_decoding,
    make_controller,
    measure_thresholds,
    sweep,
    text_chunks,
    train_probe,
)
from anee_lite.lens import LogitLens, TunedLens, collect_residuals, train_tuned_lens

TEXT = "hello world, this is a text. " * 2


@pytest.fixture(scope="module")
def chunks():
    return text_chunks(CharTokenizer(), TEXT, max_tokens=16, chunk=8)


@pytest.fixture(scope="module")
def data(llama4, chunks):
    return collect_residuals(llama4, chunks, [1, 2], top_k=8)


@given(value=st.one_of(st.integers(max_value=1), st.floats(), st.booleans(), st.text(max_size=3)))
@settings(max_examples=40, deadline=None)
def test_text_chunks_sizes_must_be_integers_at_least_2(value):
    for name in ("max_tokens", "chunk"):
        with pytest.raises((TypeError, ValueError), match=name):
            text_chunks(CharTokenizer(), TEXT, **{name: value})


@pytest.mark.parametrize("text,error", [(None, TypeError), (3, TypeError), (b"bytes", TypeError), ("  ", ValueError)])
def test_text_chunks_text_must_be_a_non_empty_str(text, error):
    with pytest.raises(error, match="text must be"):
        text_chunks(CharTokenizer(), text)


@pytest.mark.parametrize("bad,error,match", [
    ([], ValueError, "at least one"),
    ("chunk", TypeError, "list of"),
    (torch.ones(1, 4, dtype=torch.long), TypeError, r"wrap a single \[1, T\] tensor in a list"),
    ([torch.ones(2, 4, dtype=torch.long)], ValueError, r"chunks\[0\] must have shape \[1, T\]"),  # was cut to row 0
    ([torch.ones(4, dtype=torch.long)], ValueError, r"chunks\[0\] must have shape"),
    ([torch.ones(1, 4)], TypeError, "must hold integers"),
])
def test_chunk_lists_are_checked(llama4, bad, error, match):
    ctrl = make_controller("confidence", LogitLens(llama4), 0.5)
    for call in (lambda: build_replay(llama4, bad), lambda: collect_residuals(llama4, bad, [1]),
                 lambda: calibrate_by_decoding(llama4, bad, ctrl, thresholds=[0.5]),
                 lambda: measure_thresholds(llama4, bad, ctrl, [0.5])):
        with pytest.raises(error, match=match):
            call()


def test_replay_wants_the_unrolled_model(llama4_hf, chunks):
    with pytest.raises(TypeError, match="model must be an anee_lite.UnrolledModel"):
        build_replay(llama4_hf, chunks)


def test_calibrate_names_a_wrong_replay_or_controller(llama4, chunks):
    replay = build_replay(llama4, chunks)
    with pytest.raises(TypeError, match="replay must be the Replay"):
        calibrate(None, make_controller("confidence", LogitLens(llama4), 0.5))
    with pytest.raises(TypeError, match="controller must be an ExitController"):
        calibrate(replay, "confidence")


@pytest.mark.parametrize("thresholds,error,match", [
    ([], ValueError, "at least one candidate"),
    ([math.nan], ValueError, "must not hold NaN"),  # was measured as if it were a threshold
    (["a"], TypeError, "must hold numbers"),
    (0.5, TypeError, "list of numbers"),
])
def test_thresholds_are_checked(llama4, chunks, thresholds, error, match):
    ctrl = make_controller("confidence", LogitLens(llama4), 0.5)
    replay = build_replay(llama4, chunks)
    for call in (lambda: sweep(replay, ctrl, thresholds), lambda: measure_thresholds(llama4, chunks, ctrl, thresholds),
                 lambda: calibrate_by_decoding(llama4, chunks, ctrl, thresholds=thresholds)):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("layers,error,match", [
    ([], ValueError, "at least one layer"), ([0], ValueError, r"in \[1, 3\]"), ([4], ValueError, r"in \[1, 3\]"),
    ([-1], ValueError, r"in \[1, 3\]"), ([1, 1], ValueError, "must not repeat"), ([1.5], TypeError, "integer"),
    (2, TypeError, "list of layer indices"), (None, TypeError, "list of layer indices"),
])
def test_collect_residuals_layers(llama4, chunks, layers, error, match):
    with pytest.raises(error, match=match):
        collect_residuals(llama4, chunks, layers)


@pytest.mark.parametrize("top_k", [0, -1, VOCAB + 1, 2.0])
def test_collect_residuals_top_k(llama4, chunks, top_k):
    with pytest.raises((TypeError, ValueError), match="top_k"):
        collect_residuals(llama4, chunks, [1], top_k=top_k)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"steps": 0}, ValueError, "steps must be >= 1"),  # was a ZeroDivisionError in the schedule
    ({"steps": -1}, ValueError, "steps"), ({"batch_size": 0}, ValueError, "batch_size"),
    ({"lr": 0.0}, ValueError, "lr must be"), ({"lr": math.nan}, ValueError, "lr"), ({"lr": math.inf}, ValueError, "lr"),
    ({"seed": 1.5}, TypeError, "seed"), ({"warm_start": "no"}, TypeError, "warm_start"),
])
def test_train_tuned_lens_arguments(llama4, data, kwargs, error, match):
    with pytest.raises(error, match=match):
        train_tuned_lens(llama4, data, [1, 2], **({"steps": 1} | kwargs))


@pytest.mark.parametrize("layers", [[2, 1], [1], [1, 2, 3], [3]])
def test_training_refuses_layers_the_data_was_not_collected_for(llama4, data, layers):
    # Row i of the data is the i-th collected layer: [2, 1] trained layer 2's translator on layer 1's residuals.
    with pytest.raises(ValueError, match=r"layers must be the layers data was collected for, \[1, 2\]"):
        train_tuned_lens(llama4, data, layers, steps=1)
    with pytest.raises(ValueError, match=r"layers must be the layers data was collected for"):
        train_probe(LogitLens(llama4), data, layers)


def test_training_on_the_right_layers_still_works(llama4, data):
    lens = train_tuned_lens(llama4, data, [1, 2], steps=1, batch_size=4)
    assert lens.layers == [1, 2]
    assert train_probe(lens, data, [1, 2]).layers == [1, 2]


def test_train_probe_names_missing_data(llama4):
    with pytest.raises(ValueError, match="data lacks"):
        train_probe(LogitLens(llama4), {}, [1])


def test_exit_probe_construction_and_load_are_checked(tmp_path):
    with pytest.raises(TypeError, match="non-empty dicts"):
        ExitProbe({}, {})
    with pytest.raises(ValueError, match="same layers"):
        ExitProbe({1: torch.zeros(5)}, {})
    with pytest.raises(ValueError, match="1-d tensors of one length"):
        ExitProbe({1: torch.zeros(5), 2: torch.zeros(6)}, {1: torch.tensor(0.0), 2: torch.tensor(0.0)})
    with pytest.raises(FileNotFoundError, match="no exit-probe file"):
        ExitProbe.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="is a folder, not an exit-probe file"):
        ExitProbe.load(tmp_path)
    (tmp_path / "notes.txt").write_text("not a probe")
    with pytest.raises(ValueError, match="not an exit-probe file"):
        ExitProbe.load(tmp_path / "notes.txt")


def test_acceptance_by_depth_arguments(llama4, chunks):
    ids, lens = chunks[0], LogitLens(llama4)
    with pytest.raises(TypeError, match="lenses must be a non-empty dict"):
        acceptance_by_depth(llama4, [lens], ids, 2)
    with pytest.raises(TypeError, match="lenses must be a non-empty dict"):
        acceptance_by_depth(llama4, {}, ids, 2)
    with pytest.raises(TypeError, match=r"lenses\['x'\] must be a lens"):
        acceptance_by_depth(llama4, {"x": 3}, ids, 2)
    wrong = TunedLens.identity(llama4, [1])
    wrong.layers = [7]
    with pytest.raises(ValueError, match=r"lenses\['t'\].layers"):
        acceptance_by_depth(llama4, {"t": wrong}, ids, 2)
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        acceptance_by_depth(llama4, {"logit": lens}, ids[0].tolist(), 2)


def test_build_controller_names_a_model_name_that_is_not_one(llama4):
    with pytest.raises(TypeError, match="model_name must be a str or None"):
        build_controller(llama4, 3, "confidence")


def test_build_controller_takes_fewer_exit_layers(llama4):
    """Any model: exit_layers replaces every-layer exits; a bad list is refused, naming the parameter."""
    c = build_controller(llama4, None, "confidence", exit_layers=[3, 1])
    assert c.exit_layers_allowed == [1, 3]
    for bad in ([0], [4], []):
        with pytest.raises(ValueError, match="exit_layers_allowed must be a non-empty subset of \\[1, 3\\]"):
            build_controller(llama4, None, "confidence", exit_layers=bad)


def test_build_controller_keeps_exit_layers_within_the_shipped_lens(smollm2_hf):
    from anee_lite import UnrolledModel

    hf, _ = smollm2_hf
    model = UnrolledModel(hf)
    c = build_controller(model, "smollm2-135m", "learned", exit_layers=[11, 15, 19])
    assert c.exit_layers_allowed == [11, 15, 19] and c.probe.layers == list(range(7, 30, 2))
    with pytest.raises(ValueError, match=r"exit_layers must be a subset of the layers .* got \[8\] outside them"):
        build_controller(model, "smollm2-135m", "learned", exit_layers=[8, 11])
