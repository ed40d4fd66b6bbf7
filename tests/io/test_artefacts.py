"""One loader for every safetensors artefact: damaged, foreign or mismatched files are refused by path."""

import pytest
import torch
from conftest import random_llama
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anee_lite import UnrolledModel
from anee_lite.adaptive.probe import ExitProbe
from anee_lite.lens import TunedLens
from anee_lite.sparsity.calibrate import load_quantiles, save_quantiles


@pytest.fixture(scope="module")
def model():
    return UnrolledModel(random_llama(n_layers=4))


def artefacts(model, folder):
    """One good file of each kind, and the function that reads it back."""
    d = model.dims.d_model
    g = torch.Generator().manual_seed(0)
    lens = folder / "lens.safetensors"
    TunedLens(model, {1: torch.randn(d, d, generator=g)}, {1: torch.randn(d, generator=g)}).save(lens)
    probe = folder / "probe.safetensors"
    ExitProbe({1: torch.randn(d + 1, generator=g)}, {1: torch.tensor(0.5)}, "logit").save(probe)
    quantiles = folder / "quantiles.safetensors"
    save_quantiles(quantiles, torch.rand(101, model.dims.n_layers, 4, generator=g).sort(0).values, model)
    return {lens: lambda p: TunedLens.load(model, p), probe: lambda p: ExitProbe.load(p, model),
            quantiles: lambda p: load_quantiles(p, model)}


def test_good_files_load(model, tmp_path):
    for path, load in artefacts(model, tmp_path).items():
        load(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "folder", "nan", "flipped"])
def test_damaged_files_are_refused_naming_the_path(model, tmp_path, damage):
    for path, load in artefacts(model, tmp_path).items():
        data = path.read_bytes()
        if damage == "folder":
            path.unlink()
            path.mkdir()
        elif damage == "nan":  # a well-formed file whose values are not numbers
            from safetensors import safe_open
            from safetensors.torch import save_file

            with safe_open(str(path), "pt") as f:
                meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            tensors = {k: t.float() * float("nan") for k, t in tensors.items()}
            save_file(tensors, str(path), metadata=meta)
        else:
            path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00junk" * 40,
                              "flipped": data[:-8] + b"\xff\xff\xff\x7f\xff\xff\xff\x7f"}[damage])
        with pytest.raises(ValueError, match=str(path.name)):
            load(path)


def test_artefacts_of_another_kind_or_model_are_refused(model, tmp_path):
    files = list(artefacts(model, tmp_path))
    lens, probe, quantiles = files
    with pytest.raises(ValueError, match="not an exit-probe file"):
        ExitProbe.load(lens)
    with pytest.raises(ValueError, match="not a tuned-lens file"):
        TunedLens.load(model, probe)
    other = UnrolledModel(random_llama(n_layers=4, d_model=32, n_heads=4, n_kv_heads=2))
    with pytest.raises(ValueError, match="d_model"):
        TunedLens.load(other, lens)
    with pytest.raises(ValueError, match="d_model"):
        ExitProbe.load(probe, other)
    with pytest.raises(ValueError, match="other sizes"):
        load_quantiles(quantiles, other)


@given(key=st.text(alphabet="layer.0123456789wightbsx_", min_size=1, max_size=16))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_unexpected_tensor_names_are_refused(model, tmp_path, key):
    from safetensors.torch import save_file

    d = model.dims.d_model
    expected = key.split(".")
    if len(expected) == 3 and expected[0] == "layer" and expected[1].isdigit() and expected[2] in ("weight", "bias"):
        return  # a well-formed name
    path = tmp_path / "odd.safetensors"
    save_file({"layer.1.weight": torch.zeros(d + 1), "layer.1.bias": torch.zeros(1), key: torch.zeros(1)}, str(path),
              metadata={"kind": "exit_probe", "lens": "logit"})
    with pytest.raises(ValueError, match="unexpected tensor"):
        ExitProbe.load(path, model)


def test_a_probe_of_another_width_is_refused_by_the_learned_controller(model):
    from anee_lite.adaptive import make_controller
    from anee_lite.lens import LogitLens

    wide = ExitProbe({1: torch.zeros(model.dims.d_model + 9)}, {1: torch.tensor(0.0)}, "logit")
    with pytest.raises(ValueError, match="d_model"):
        make_controller("learned", LogitLens(model), 0.5, probe=wide)
    deep = ExitProbe({9: torch.zeros(model.dims.d_model + 1)}, {9: torch.tensor(0.0)}, "logit")
    with pytest.raises(ValueError, match="layers"):
        make_controller("learned", LogitLens(model), 0.5, probe=deep)


def saved_lens_and_probe(model, folder):
    """A tuned lens and an exit probe saved by the library, with what each load must give back."""
    d = model.dims.d_model
    g = torch.Generator().manual_seed(1)
    lens = TunedLens(model, {1: torch.randn(d, d, generator=g), 2: torch.randn(d, d, generator=g)},
                     {1: torch.randn(d, generator=g), 2: torch.randn(d, generator=g)})
    lens.save(folder / "lens.safetensors", model_name="tiny")
    probe = ExitProbe({1: torch.randn(d + 1, generator=g)}, {1: torch.tensor(0.25)}, "logit")
    probe.save(folder / "probe.safetensors", model_name="tiny")

    def lens_values(p):
        back = TunedLens.load(model, p)
        return [back.weights[l] for l in back.layers] + [back.biases[l] for l in back.layers]

    def probe_values(p):
        back = ExitProbe.load(p, model)
        return [back.weights[l] for l in back.layers] + [back.biases[l] for l in back.layers]

    return {folder / "lens.safetensors": lens_values, folder / "probe.safetensors": probe_values}


@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_flipped_bit_is_refused_or_changes_nothing_loaded(model, tmp_path, where, bit):
    """One bit flipped anywhere (header or tensor bytes): a ValueError naming the file, never other values."""
    for path, values in saved_lens_and_probe(model, tmp_path).items():
        good = path.read_bytes()
        expected = values(path)
        data = bytearray(good)
        data[int(where * len(data))] ^= 1 << bit
        path.write_bytes(bytes(data))
        try:
            got = values(path)
        except ValueError as exc:
            assert path.name in str(exc)
            continue
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_a_flipped_byte_in_the_tensors_is_refused_by_the_checksum(model, tmp_path):
    """A finite but wrong weight (the kind NaN checks miss) is caught by the SHA-256 recorded at save time."""
    for path, values in saved_lens_and_probe(model, tmp_path).items():
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01  # the low mantissa bits of the last value: still finite
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match=f"{path.name} is damaged"):
            values(path)


@pytest.mark.parametrize("n_layers,vocab", [(6, None), (4, 300)])
def test_a_lens_of_a_model_with_other_sizes_is_refused(model, tmp_path, n_layers, vocab):
    """Same width, another depth or vocabulary: refused by name, not loaded to read the wrong model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=n_layers, hidden_size=model.dims.d_model, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=136, vocab_size=vocab or model.dims.d_vocab,
                      max_position_embeddings=128)
    stranger = UnrolledModel(LlamaForCausalLM(cfg).eval())
    lens_file = tmp_path / "lens.safetensors"
    TunedLens.identity(model, [1, 2]).save(lens_file)
    size = "n_layers" if vocab is None else "d_vocab"
    with pytest.raises(ValueError, match=f"lens.safetensors was made for a model with .*{size}="):
        TunedLens.load(stranger, lens_file)


def test_a_probe_for_layers_the_model_lacks_is_refused(model, tmp_path):
    path = tmp_path / "probe.safetensors"
    ExitProbe({5: torch.zeros(model.dims.d_model + 1)}, {5: torch.tensor(0.0)}, "logit").save(path)
    with pytest.raises(ValueError, match=r"probe.safetensors was trained for a model with d_model=64 and layers \[5\]"):
        ExitProbe.load(path, model)


def test_a_probe_bias_of_several_values_is_refused(model, tmp_path):
    from anee_lite.io.files import write_safetensors

    d = model.dims.d_model
    path = tmp_path / "probe.safetensors"
    write_safetensors(path, {"layer.1.weight": torch.zeros(d + 1), "layer.1.bias": torch.arange(5.0)},
                      "exit_probe", {"lens": "logit"})
    with pytest.raises(ValueError, match="probe.safetensors is not a usable exit probe: biases must be one-element"):
        ExitProbe.load(path, model)


def test_saving_over_an_artefact_is_atomic(model, tmp_path, monkeypatch):
    """Ctrl-C while saving keeps the old file whole and leaves no temporary behind."""
    import os

    files = saved_lens_and_probe(model, tmp_path)
    before = {p: p.read_bytes() for p in files}

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    d = model.dims.d_model
    for path in files:
        with pytest.raises(KeyboardInterrupt):
            if "lens" in path.name:
                TunedLens.identity(model, [3]).save(path)
            else:
                ExitProbe({3: torch.zeros(d + 1)}, {3: torch.tensor(0.0)}, "logit").save(path)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in files} == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in files)
    for path, values in files.items():
        values(path)


@pytest.mark.parametrize("path", [None, 3, b"lens.safetensors"])
def test_a_path_that_is_not_a_path_is_a_type_error(model, path):
    with pytest.raises(TypeError, match="path must be a file path"):
        TunedLens.load(model, path)
    with pytest.raises(TypeError, match="path must be a file path"):
        ExitProbe.load(path)


def test_the_shipped_lens_and_probe_carry_a_checksum_that_holds():
    from safetensors import safe_open

    from anee_lite.io.assets import lens_path, probe_path
    from anee_lite.io.files import read_safetensors

    for path, kind in ((lens_path(), "tuned_lens"), (probe_path(), "exit_probe")):
        with safe_open(str(path), "pt") as f:
            assert len(f.metadata()["sha256"]) == 64 and f.metadata()["d_model"] == "576"
        read_safetensors(path, kind)  # recomputes the checksum
