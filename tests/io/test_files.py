"""write_atomically: readers see the old file or the new one; an interrupted write leaves nothing behind."""

import os

import pytest

from anee_lite.io.files import write_atomically


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "results.json"
    write_atomically(target, "first")
    write_atomically(str(target), "second")
    assert target.read_text() == "second" and os.listdir(tmp_path) == ["results.json"]


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old results")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, "new results")
    assert target.read_text() == "old results" and os.listdir(tmp_path) == ["results.json"]


def test_keeps_the_files_permissions(tmp_path):
    target = tmp_path / "shared.json"
    target.write_text("x")
    target.chmod(0o664)
    write_atomically(target, "y")
    assert target.stat().st_mode & 0o777 == 0o664


def test_writes_bytes_as_they_are(tmp_path):
    target = tmp_path / "weights.safetensors"
    write_atomically(target, b"\x00\xffbinary")
    assert target.read_bytes() == b"\x00\xffbinary" and os.listdir(tmp_path) == ["weights.safetensors"]
