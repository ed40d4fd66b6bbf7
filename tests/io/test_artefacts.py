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
