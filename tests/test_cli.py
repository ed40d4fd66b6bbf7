"""The command line refuses bad values as usage errors (exit 2), before any work, and never destroys its inputs."""

import json
import subprocess
import sys

import pytest

from anee_lite import cli
from anee_lite.io.assets import DATA_DIR

TEXT = "The quick brown fox jumps over the lazy dog. " * 4


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exc.value.code, err


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model means the checks came too late."""
    import anee_lite.io.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(anee_lite.io.loading, "load_pretrained", refuse)


@pytest.mark.parametrize("value", ["-1", "2.5", "many", ""])
def test_demo_max_new_tokens_must_be_a_count(value, capsys, no_model):
    code, err = run(["demo", "--max-new-tokens", value], capsys)
    assert code == 2 and "--max-new-tokens" in err and "integer >= 0" in err


def test_demo_on_an_empty_folder_is_a_usage_error(tmp_path, capsys):
    code, err = run(["demo", "--model", str(tmp_path)], capsys)
    assert code == 2 and "has no config.json" in err and str(tmp_path) in err


def test_demo_on_a_folder_with_broken_config_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{oops")
    code, err = run(["demo", "--model", str(tmp_path)], capsys)
    assert code == 2 and str(tmp_path) in err


def test_demo_with_an_empty_model_name_is_a_usage_error(capsys):
    code, err = run(["demo", "--model", ""], capsys)  # not silently the default model
    assert code == 2 and "empty" in err


@pytest.mark.parametrize("value", ["0", "1", "2", "nan", "-0.1", "ten"])
def test_evaluate_delta_outside_0_1_is_refused_before_any_work(value, tmp_path, capsys, no_model):
    code, err = run(evaluate_args(tmp_path, tmp_path / "out.json", "--delta", value), capsys)
    assert code == 2 and "--delta must be in (0, 1)" in err


def evaluate_args(tmp_path, json_path, *extra):
    text = tmp_path / "text.txt"
    if not text.exists():
        text.write_text(TEXT)
    return ["evaluate", "--model", "smollm2-135m", "--text", str(text), "--controller", "margin",
            "--json", str(json_path), *extra]


def test_json_onto_the_text_file_is_refused_and_the_text_kept(tmp_path, capsys, no_model):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    code, err = run(evaluate_args(tmp_path, text), capsys)
    assert code == 2 and "--json" in err and "--text file" in err
    assert text.read_text() == TEXT


def test_json_onto_the_calibration_text_is_refused(tmp_path, capsys, no_model):
    calibration = tmp_path / "cal.txt"
    calibration.write_text(TEXT)
    (tmp_path / "sub").mkdir()  # the same file under another spelling
    code, err = run(evaluate_args(tmp_path, tmp_path / "sub" / ".." / "cal.txt", "--calibration-text",
                                  str(calibration)), capsys)
    assert code == 2 and "--calibration-text file" in err
    assert calibration.read_text() == TEXT


def test_json_onto_the_shipped_calibration_text_is_refused(tmp_path, capsys, no_model):
    shipped = DATA_DIR / "python_docs_calibration.txt"
    before = shipped.read_bytes()
    code, err = run(evaluate_args(tmp_path, shipped), capsys)
    assert code == 2 and "--calibration-text file" in err
    assert shipped.read_bytes() == before


@pytest.mark.parametrize("where,message", [
    ("missing/out.json", "does not exist"),
    (".", "is a folder"),
    ("/proc/out.json", "cannot write in /proc"),
])
def test_json_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys, no_model, where, message):
    path = where if where.startswith("/") else tmp_path / where
    code, err = run(evaluate_args(tmp_path, path), capsys)
    assert code == 2 and "--json" in err and message in err


def test_results_are_written_atomically(tiny_gpt2_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.json"
    out.write_text("previous results")
    args = ["evaluate", "--model", str(tiny_gpt2_folder), "--text", str(tmp_path / "text.txt"), "--controller",
            "margin", "--threshold", "0.5", "--max-tokens", "12", "--json", str(out)]
    (tmp_path / "text.txt").write_text(TEXT)

    def disk_full(tmp, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.os, "replace", disk_full)
    code, err = run(args, capsys)
    assert code == 1 and "could not write" in err and "No space left" in err
    assert out.read_text() == "previous results"  # not half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "text.txt"]  # no temporary file left
    monkeypatch.undo()
    assert cli.main(args) == 0
    assert json.loads(out.read_text())["tokens"] == 12


@pytest.mark.slow
def test_the_module_entry_point_prints_usage_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "anee_lite", "demo", "--max-new-tokens", "-1"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_kv_fill_outside_the_choices_is_refused_before_any_work(tmp_path, capsys, no_model):
    code, err = run(evaluate_args(tmp_path, tmp_path / "out.json", "--kv-fill", "eager"), capsys)
    assert code == 2 and "--kv-fill" in err and "catch_up" in err


def test_evaluate_catches_up_by_default(tmp_path):
    """The CLI calibrates and decodes under the fill its promise holds with, unless --kv-fill says otherwise."""
    parser = cli.build_parser()
    assert parser.parse_args(evaluate_args(tmp_path, tmp_path / "out.json")).kv_fill == "catch_up"
    propagate = evaluate_args(tmp_path, tmp_path / "out.json", "--kv-fill", "propagate")
    assert parser.parse_args(propagate).kv_fill == "propagate"


def test_evaluate_checks_the_speed_of_its_choice_unless_told_not_to(tmp_path, capsys, no_model):
    from anee_lite.adaptive.real_calibration import SPEED_CHECK_TOKENS

    parser = cli.build_parser()
    assert parser.parse_args(evaluate_args(tmp_path, tmp_path / "out.json")).speed_check_tokens == SPEED_CHECK_TOKENS
    off = evaluate_args(tmp_path, tmp_path / "out.json", "--speed-check-tokens", "0")
    assert parser.parse_args(off).speed_check_tokens == 0
    code, err = run(evaluate_args(tmp_path, tmp_path / "out.json", "--speed-check-tokens", "-1"), capsys)
    assert code == 2 and "--speed-check-tokens" in err and "integer >= 0" in err


def test_evaluate_exit_layers_must_be_integers(tmp_path, capsys, no_model):
    code, err = run(evaluate_args(tmp_path, tmp_path / "out.json", "--exit-layers", "eleven"), capsys)
    assert code == 2 and "--exit-layers" in err
