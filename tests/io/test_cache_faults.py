"""The offline cache under faults: dead writers' leftovers, live writers, foreign files, unwritable places.

Most tests replace the 20 s GGUF conversion by loading a tiny GPT-2 (``fake_offline``); the leftover
and locking logic they exercise is the same. ``test_killing_the_real_conversion...`` kills the real one.
"""

import errno
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from anee_lite.io import loading, offline_cache
from anee_lite.io.loading import OFFLINE_ALIAS, OfflineCacheError, load_pretrained

CHILD = pathlib.Path(__file__).with_name("offline_child.py")
REPO = pathlib.Path(__file__).parents[2]


@pytest.fixture
def fake_offline(tmp_path, monkeypatch, tiny_gpt2_folder):
    """XDG_CACHE_HOME in tmp_path, a small stand-in GGUF and a conversion that loads the tiny GPT-2."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    gguf = tmp_path / loading._GGUF_FILE
    gguf.write_bytes(b"GGUF" + bytes(1000))
    calls = []

    def convert(gguf_path):
        calls.append(gguf_path)
        return AutoModelForCausalLM.from_pretrained(tiny_gpt2_folder), AutoTokenizer.from_pretrained(tiny_gpt2_folder)

    monkeypatch.setattr(loading, "_find_gguf", lambda: gguf)
    monkeypatch.setattr(loading, "_convert_gguf", convert)
    return SimpleNamespace(folder=loading.offline_model_cache_dir(), calls=calls, gguf=gguf)


def neighbours(folder):
    """Everything next to the cache folder except the folder itself."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def dead_leftovers(folder):
    """What killed writers leave: staging and retired folders, their lock files, a pre-lock staging folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = offline_cache.leftover_path(folder, "tmp", "a" * 32)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(bytes(10_000))
    offline_cache.lock_path(folder, "a" * 32).write_text("pid 99999999\n")  # its writer died holding nothing
    retired = offline_cache.leftover_path(folder, "old", "b" * 32)
    retired.write_text("a cache folder a user replaced by a file")
    (folder.parent / f".{folder.name}.tmp-k3j_x9ab").mkdir()  # made by anee-lite before writers had lock files
    offline_cache.lock_path(folder, "c" * 32).write_text("pid 99999999\n")  # killed before it made any folder


def test_a_later_load_removes_what_dead_writers_left(fake_offline):
    fake = fake_offline
    folder = fake.folder
    dead_leftovers(folder)
    assert len(neighbours(folder)) == 5
    model, _ = load_pretrained(OFFLINE_ALIAS)
    assert neighbours(folder) == []
    assert offline_cache.verify_cache(folder, fake.gguf) is None
    assert type(model).__name__ == "GPT2LMHeadModel"


def test_dead_leftovers_go_even_when_the_cache_is_valid(fake_offline):
    fake = fake_offline
    folder = fake.folder
    load_pretrained(OFFLINE_ALIAS)
    dead_leftovers(folder)
    load_pretrained(OFFLINE_ALIAS)
    assert neighbours(folder) == [] and len(fake.calls) == 1  # cleaned, not rebuilt


def test_a_live_writer_in_this_process_is_left_alone(fake_offline):
    fake = fake_offline
    folder = fake.folder
    folder.parent.mkdir(parents=True)
    with offline_cache.writer_lock(folder) as token:
        staging = offline_cache.leftover_path(folder, "tmp", token)
        staging.mkdir()
        offline_cache.remove_dead_leftovers(folder)
        load_pretrained(OFFLINE_ALIAS)  # a whole other load meanwhile, with its own writer
        assert staging.is_dir() and offline_cache.lock_path(folder, token).is_file()
    assert neighbours(folder) == []


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.mkdir(sys.argv[2])
print('locked', flush=True)
time.sleep(60)
"""


def test_a_live_writer_in_another_process_is_left_alone_until_it_is_killed(fake_offline):
    fake = fake_offline
    folder = fake.folder
    folder.parent.mkdir(parents=True)
    token = "d" * 32
    lock, staging = offline_cache.lock_path(folder, token), offline_cache.leftover_path(folder, "tmp", token)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), str(staging)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        offline_cache.remove_dead_leftovers(folder)
        assert staging.is_dir() and lock.is_file()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    load_pretrained(OFFLINE_ALIAS)
    assert neighbours(folder) == []


def test_a_file_in_place_of_the_cache_folder_is_replaced_without_leftovers(fake_offline):
    fake = fake_offline
    folder = fake.folder
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")
    with pytest.warns(UserWarning, match="corrupted"):
        load_pretrained(OFFLINE_ALIAS)
    assert folder.is_dir() and neighbours(folder) == []


def test_files_the_manifest_does_not_list_are_not_loaded(fake_offline):
    fake = fake_offline
    folder = fake.folder
    _, tokenizer = load_pretrained(OFFLINE_ALIAS)
    eos = tokenizer.eos_token
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": "Hello", "bos_token": "Hello"}))
    (folder / "added_tokens.json").write_text(json.dumps({"Hello": 5}))
    (folder / "generation_config.json").unlink(missing_ok=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    if "generation_config.json" in manifest["files"]:  # a listed file that vanished is still caught
        assert "generation_config.json is missing" in offline_cache.verify_cache(folder, fake.gguf)
        (folder / "generation_config.json").write_text("{}")
        manifest["files"].pop("generation_config.json")
        (folder / "manifest.json").write_text(json.dumps(manifest))
    assert offline_cache.verify_cache(folder, fake.gguf) is None
    model, tokenizer = load_pretrained(OFFLINE_ALIAS)
    assert tokenizer.eos_token == eos and tokenizer.bos_token == eos
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.name_or_path == str(folder) and model.config._name_or_path == str(folder)


# --- where the cache cannot be written: refused before the conversion, naming the path -----------------


def refuses_before_converting(fake, match):
    with pytest.raises(OfflineCacheError, match=match) as caught:
        load_pretrained(OFFLINE_ALIAS)
    assert fake.calls == [], "the error must come before the slow conversion"
    assert isinstance(caught.value, ValueError) and "XDG_CACHE_HOME" in str(caught.value)
    return str(caught.value)


def test_xdg_cache_home_pointing_at_a_file(fake_offline, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    folder = loading.offline_model_cache_dir()
    assert str(folder.parent) in refuses_before_converting(fake_offline, "Cannot create")


def test_a_cache_folder_that_cannot_be_created(fake_offline, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/anee-lite-test")  # procfs: not even root may mkdir there
    refuses_before_converting(fake_offline, "/proc/anee-lite-test")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_cache_folder(fake_offline):
    parent = fake_offline.folder.parent
    parent.mkdir(parents=True)
    parent.chmod(0o555)
    try:
        refuses_before_converting(fake_offline, "not writable")
    finally:
        parent.chmod(0o755)


def test_a_disk_without_room_for_the_weights(fake_offline, monkeypatch):
    monkeypatch.setattr(loading.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 1000))
    message = refuses_before_converting(fake_offline, "Not enough free space")
    assert str(fake_offline.folder.parent) in message


def test_a_disk_that_fills_up_while_writing(fake_offline, monkeypatch):
    def full(folder, gguf_path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(loading, "write_manifest", full)
    with pytest.raises(OfflineCacheError, match="No space left on device"):
        load_pretrained(OFFLINE_ALIAS)
    assert not fake_offline.folder.exists() and neighbours(fake_offline.folder) == []


# --- local folders and names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("damage,match", [
    (lambda f: (f / "config.json").write_text("{not json"), "config.json|damaged"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 16), "damaged"),
    (lambda f: (f / "model.safetensors").unlink(), "damaged"),
])
def test_a_damaged_local_folder_is_a_value_error_naming_it(tiny_gpt2_folder, tmp_path, damage, match):
    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2_folder, folder)
    damage(folder)
    with pytest.raises(ValueError, match=match) as caught:
        load_pretrained(folder)
    assert str(folder) in str(caught.value)


@pytest.mark.parametrize("name,error", [(3, TypeError), (None, TypeError), (b"gpt2", TypeError), ("", ValueError),
                                        ("   ", ValueError)])
def test_names_that_are_not_names_are_refused(name, error):
    with pytest.raises(error, match="name_or_path") as caught:
        load_pretrained(name)
    assert "smollm2-135m" in str(caught.value)


# --- real processes killed at random moments ----------------------------------------------------------------


def child(xdg, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(CHILD), str(xdg), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_while_converting(proc, delay):
    """Wait until the child has taken its writer lock (it says so), then SIGKILL it ``delay`` s later."""
    for line in proc.stderr:
        if "Converting the GGUF" in line:
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


@pytest.mark.slow
def test_killed_conversions_leave_nothing_a_later_load_keeps(fake_offline, tiny_gpt2_folder):
    fake = fake_offline
    folder = fake.folder
    xdg = os.environ["XDG_CACHE_HOME"]
    seed = int(time.time())
    rng = random.Random(seed)
    for _ in range(3):  # the fake conversion and save take about a second after the lock is taken
        proc = child(xdg, fake.gguf, tiny_gpt2_folder)
        kill_while_converting(proc, rng.uniform(0, 1.5))
        assert proc.returncode in (-signal.SIGKILL, 0), f"seed {seed}"
    model, _ = load_pretrained(OFFLINE_ALIAS)
    assert neighbours(folder) == [], f"seed {seed}"
    assert offline_cache.verify_cache(folder, fake.gguf) is None
    assert type(model).__name__ == "GPT2LMHeadModel"


@pytest.mark.slow
def test_two_processes_converting_at_once_both_succeed(fake_offline, tiny_gpt2_folder):
    fake = fake_offline
    folder = fake.folder
    procs = [child(os.environ["XDG_CACHE_HOME"], fake.gguf, tiny_gpt2_folder) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("loaded GPT2LMHeadModel" in out for out, _ in outputs)
    assert neighbours(folder) == [] and offline_cache.verify_cache(folder, fake.gguf) is None


@pytest.mark.slow
def test_killing_the_real_conversion_at_a_random_moment(tmp_path, monkeypatch, tiny_gpt2_folder):
    """The real GGUF conversion in a child process, SIGKILLed somewhere in its ~20 s; the next load cleans up."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    xdg = tmp_path / "xdg"
    delay = random.uniform(0, 15)
    proc = child(xdg, "real")
    kill_while_converting(proc, delay)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    folder = loading.offline_model_cache_dir()
    assert proc.returncode in (-signal.SIGKILL, 0)
    # The next load cleans up; rebuilding uses the tiny model to save another 20 s.
    monkeypatch.setattr(loading, "_convert_gguf", lambda gguf: (AutoModelForCausalLM.from_pretrained(tiny_gpt2_folder),
                                                               AutoTokenizer.from_pretrained(tiny_gpt2_folder)))
    load_pretrained(OFFLINE_ALIAS, dtype=torch.float32)
    assert neighbours(folder) == [], f"killed after {delay:.1f} s"
    assert offline_cache.verify_cache(folder, loading._find_gguf()) is None


# --- the temporary folder of links of a load killed mid-way ------------------------------------------------


def view_entries(temp: pathlib.Path) -> list[str]:
    """The loads' folders of links and their lock files in the temp directory ``temp``."""
    return sorted(p.name for p in temp.iterdir() if p.name.startswith(".anee-lite-cache-view."))


def test_dead_loads_link_folders_are_removed_by_the_next_load_live_ones_kept(fake_offline, tmp_path, monkeypatch):
    """Each load holds an flock on its view's lock file; the kernel drops it when the process dies, however."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(loading.tempfile, "tempdir", str(temp))
    load_pretrained(OFFLINE_ALIAS)  # builds the cache
    assert view_entries(temp) == []  # a finished load leaves nothing
    views = loading._views_base()
    dead, orphan, here, there = (offline_cache.leftover_path(views, "tmp", c * 32) for c in "abcd")
    offline_cache.lock_path(views, "a" * 32).write_text("pid 99999999\n")  # its process died: nobody holds the flock
    foreign = temp / "someone-elses-folder"
    for folder in (dead, orphan, foreign):
        folder.mkdir()
        (folder / "config.json").symlink_to(fake_offline.folder / "config.json")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(offline_cache.lock_path(views, "d" * 32)), str(there)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # a load running in another process
        with offline_cache.writer_lock(views) as token:  # and one in this process
            here = offline_cache.leftover_path(views, "tmp", token)
            here.mkdir()
            load_pretrained(OFFLINE_ALIAS)
            assert not dead.exists() and not orphan.exists() and here.is_dir() and there.is_dir()
            assert foreign.is_dir() and (fake_offline.folder / "config.json").is_file()  # links went, not targets
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert view_entries(temp) == sorted([there.name, offline_cache.lock_path(views, "d" * 32).name])  # killed, not cleaned
    load_pretrained(OFFLINE_ALIAS)
    assert view_entries(temp) == [] and foreign.is_dir()


@pytest.mark.slow
def test_a_load_killed_with_sigkill_leaves_a_folder_the_next_load_removes(fake_offline, tmp_path, tiny_gpt2_folder):
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # this checkout's code
    subprocess.run([sys.executable, str(CHILD), str(tmp_path / "xdg"), str(fake_offline.gguf), str(tiny_gpt2_folder)],
                   env=env, check=True, capture_output=True)  # builds the cache
    stuck = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, tempfile, time; sys.argv = ['x', sys.argv[1], sys.argv[2], sys.argv[3]];"
        "from anee_lite.io import loading;"
        "loading._find_gguf = lambda: __import__('pathlib').Path(sys.argv[2]);"
        "orig = loading._load_hf\n"
        "def slow(*a, **k):\n    print('viewing', flush=True); time.sleep(60)\n"
        "loading._load_hf = slow; loading.load_pretrained(loading.OFFLINE_ALIAS)"),
        str(tmp_path / "xdg"), str(fake_offline.gguf), str(tiny_gpt2_folder)], env=env, stdout=subprocess.PIPE)
    assert stuck.stdout.readline().strip() == b"viewing"  # inside the load, its link folder made
    stuck.send_signal(signal.SIGKILL)
    stuck.wait()
    assert view_entries(temp)  # left behind: the folder of links and its lock file
    subprocess.run([sys.executable, str(CHILD), str(tmp_path / "xdg"), str(fake_offline.gguf), str(tiny_gpt2_folder)],
                   env=env, check=True, capture_output=True)
    assert view_entries(temp) == []
