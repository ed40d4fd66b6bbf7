"""Device profiles: the shipped table, user files, the measured and cached local profile."""

from __future__ import annotations

import json
import os

import pytest

from anee_lite.cost import devices
from anee_lite.cost.devices import (
    PROFILES,
    DeviceProfile,
    LocalMeasurements,
    device_names,
    get_profile,
    load_profile,
    profile_from_dict,
    profile_from_measurements,
)

REQUIRED_DEVICES = {"local", "t4", "l4", "a100-40gb", "h100-sxm", "apple-m2", "raspberry-pi-5", "snapdragon-8-gen-3"}
REAL_QUICK_CHECK = devices.quick_check
STEADY = {"matvec_s": 2e-3, "op_s": 1e-6}


@pytest.fixture(autouse=True)
def steady_machine(monkeypatch):
    """The cache tests run on a machine whose speed does not move (the real check is timed, so it jitters)."""
    monkeypatch.setattr(devices, "quick_check", lambda: dict(STEADY))


def test_required_devices_are_listed():
    assert REQUIRED_DEVICES <= set(device_names())
    assert device_names()[0] == "local"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_shipped_number_has_a_source(name):
    p = PROFILES[name]
    for key in ("peak_flops", "memory_bandwidth", "cache_bytes", "op_overhead_s", "joules_per_flop",
                "joules_per_byte", "idle_watts", "efficiency"):
        assert p.sources.get(key), f"{name}: no source for {key}"
    assert not p.validated and not p.measured  # no GPU, phone or Pi was measured here
    # Tensor-core / NPU rates only grow with narrower types; a byte from DRAM costs more than a FLOP.
    assert p.peak_flops["fp32"] <= p.peak_flops["fp16"] <= p.peak_flops["int8"]
    assert p.joules_per_byte > p.joules_per_flop["fp32"]


def test_datasheet_numbers_spot_checks():
    assert PROFILES["t4"].memory_bandwidth == 320e9 and PROFILES["t4"].peak_flops["fp16"] == 65e12
    assert PROFILES["a100-40gb"].memory_bandwidth == 1555e9 and PROFILES["a100-40gb"].peak_flops["fp16"] == 312e12
    assert PROFILES["h100-sxm"].memory_bandwidth == 3350e9
    assert PROFILES["raspberry-pi-5"].peak_flops["fp32"] == pytest.approx(4 * 2.4e9 * 2 * 4 * 2)


def test_profile_round_trips_through_json(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(PROFILES["l4"].as_dict() | {"name": "my-l4"}))
    mine = get_profile(str(path))
    assert mine.name == "my-l4" and mine.memory_bandwidth == PROFILES["l4"].memory_bandwidth


def test_profile_from_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(PROFILES["t4"].as_dict() | {"name": "my-t4"}))
    assert load_profile(path).name == "my-t4"


@pytest.mark.parametrize("change,match", [
    ({"memory_bandwidth": 0}, "memory_bandwidth"),
    ({"memory_bandwidth": -1.0}, "memory_bandwidth"),
    ({"compute_efficiency": 1.5}, "compute_efficiency"),
    ({"peak_flops": {"fp32": 1e12}}, "peak_flops"),
    ({"joules_per_flop": {"fp32": 1e-12, "fp16": -1, "int8": 1e-13}}, "joules_per_flop"),
    ({"op_overhead_s": float("nan")}, "op_overhead_s"),
    ({"idle_watts": True}, "idle_watts"),
    ({"rows_efficiency": [[64, 0.5], [16, 0.2]]}, "rows_efficiency rows must be increasing"),
    ({"rows_efficiency": [[0, 0.5]]}, "rows_efficiency rows must be increasing integers >= 1"),
    ({"rows_efficiency": [[16, 1.5]]}, r"rows_efficiency shares must be in \(0, 1\]"),
    ({"rows_efficiency": [[16.0, 0.5]]}, "rows_efficiency rows"),
    ({"rows_efficiency": [16, 0.5]}, r"rows_efficiency must be \(rows, share\) pairs"),
    ({"few_rows_slowdown": [[4, 1.5], [2, 1.2]]}, "few_rows_slowdown rows must be increasing"),
    ({"few_rows_slowdown": [[1, 1.0]]}, "few_rows_slowdown rows must be increasing integers >= 2"),
    ({"few_rows_slowdown": [[2, 0.9]]}, "few_rows_slowdown factors must be finite numbers >= 1"),
    ({"few_rows_slowdown": [[2, float("inf")]]}, "few_rows_slowdown factors"),
    ({"few_rows_slowdown": [2, 1.3]}, r"few_rows_slowdown must be \(rows, factor\) pairs"),
])
def test_bad_profile_fields_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        profile_from_dict(PROFILES["t4"].as_dict() | change)


def test_unknown_and_missing_fields(tmp_path):
    with pytest.raises(ValueError, match="unknown device profile fields"):
        profile_from_dict(PROFILES["t4"].as_dict() | {"tflops": 1})
    data = PROFILES["t4"].as_dict()
    del data["memory_bandwidth"]
    with pytest.raises(ValueError, match="missing fields"):
        profile_from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_profile(bad)
    with pytest.raises(ValueError, match="no such device profile file"):
        load_profile(tmp_path / "absent.json")


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match="t4"):
        get_profile("tpu-v9")


FAKE = LocalMeasurements(stream_bandwidth=10e9, matvec_bandwidth=8e9, matvec_overhead_s=20e-6, matmul_flops=50e9,
                         op_overhead_s=2e-6)


def test_a_products_share_of_the_peak_follows_its_rows_between_the_measured_ones():
    p = profile_from_dict(PROFILES["t4"].as_dict() | {"rows_efficiency": [[16, 0.25], [64, 0.75], [256, 1.0]]})
    assert p.rows_share(0) == 1.0  # not a product over positions
    assert p.rows_share(1) == p.rows_share(16) == 0.25  # held below the smallest measured
    assert p.rows_share(32) == pytest.approx(0.5)  # halfway in log(rows) between 16 and 64
    assert p.rows_share(128) == pytest.approx(0.875)
    assert p.rows_share(4096) == 1.0  # held above the largest
    assert PROFILES["t4"].rows_share(8) == 1.0  # no table: the achievable rate for every product
    assert profile_from_dict(json.loads(json.dumps(p.as_dict()))) == p  # JSON keeps the table


def test_a_few_rows_cost_their_measured_multiple_of_one_row_in_between_the_measured_ones():
    p = profile_from_dict(PROFILES["t4"].as_dict() | {"few_rows_slowdown": [[2, 1.4], [8, 2.0]]})
    assert p.memory_slowdown(0) == p.memory_slowdown(1) == 1.0
    assert p.memory_slowdown(2) == pytest.approx(1.4) and p.memory_slowdown(8) == pytest.approx(2.0)
    assert p.memory_slowdown(4) == pytest.approx(1.7)  # halfway in log(rows) between 2 and 8
    assert p.memory_slowdown(64) == pytest.approx(2.0)  # held after the last (compute bounds such products anyway)
    assert PROFILES["t4"].memory_slowdown(4) == 1.0  # no table: a few rows stream the weights as fast as one
    assert profile_from_dict(json.loads(json.dumps(p.as_dict()))) == p  # JSON keeps the table
    local = profile_from_measurements(LocalMeasurements(**(vars(FAKE) | {"few_rows": ((2, 1.3), (16, 2.5))})))
    assert local.few_rows_slowdown == ((2, 1.3), (16, 2.5))


def test_the_local_profile_keeps_the_measured_rate_per_row_count():
    rows = LocalMeasurements(**(vars(FAKE) | {"matmul_flops": 80e9, "matmul_rows": ((16, 20e9), (256, 80e9))}))
    p = profile_from_measurements(rows)
    assert p.peak_flops["fp32"] == 80e9 and p.rows_efficiency == ((16, 0.25), (256, 1.0))


def test_the_local_profile_charges_attention_at_its_measured_share_of_the_peak():
    p = profile_from_measurements(LocalMeasurements(**(vars(FAKE) | {"attention_flops": 20e9})))
    assert p.attention_efficiency == pytest.approx(0.4)  # 20 of the fastest matmul's 50 GFLOP/s
    assert profile_from_measurements(FAKE).attention_efficiency == 1.0  # not measured: the matmul rate
    fast = profile_from_measurements(LocalMeasurements(**(vars(FAKE) | {"attention_flops": 90e9})))
    assert fast.attention_efficiency == 1.0  # never above the peak it is a share of
    assert profile_from_dict(json.loads(json.dumps(p.as_dict()))) == p


@pytest.mark.parametrize("value", [0, -0.5, 1.5, "0.5", True])
def test_an_attention_efficiency_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="attention_efficiency"):
        profile_from_dict(PROFILES["t4"].as_dict() | {"attention_efficiency": value})


def test_local_profile_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: calls.append(1) or FAKE)
    first = get_profile("local")
    assert (tmp_path / "anee-lite" / "device-local.json").is_file()
    second = get_profile("local")
    assert len(calls) == 1 and first == second
    assert first.measured and first.bytes_per_second() == pytest.approx(8e9)
    assert first.memory_bandwidth == 10e9 and first.peak_flops["fp32"] == 50e9
    get_profile("local", remeasure=True)
    assert len(calls) == 2
    (tmp_path / "anee-lite" / "device-local.json").write_text("{corrupt")
    get_profile("local")  # a corrupt cache is measured again, not an error
    assert len(calls) == 3


def test_profile_from_measurements_keeps_the_physics():
    p = profile_from_measurements(FAKE)
    assert isinstance(p, DeviceProfile) and p.matmul_overhead_s == 20e-6 and p.op_overhead_s == 2e-6
    assert p.bytes_per_second() <= p.memory_bandwidth


def test_micro_benchmark_runs_and_gives_sane_numbers():
    m = devices.run_micro_benchmark(repeats=1, stream_mib=8, matvec_mib=8)
    for bad in ({"repeats": 0}, {"stream_mib": 0}, {"matvec_mib": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            devices.run_micro_benchmark(**bad)
    assert m.stream_bandwidth > 1e8 and m.matvec_bandwidth > 1e8 and m.matmul_flops > 1e8
    assert 0 < m.op_overhead_s < 1e-3 and m.matvec_overhead_s >= 0
    assert m.attention_flops > 1e8


def test_an_unwritable_local_profile_cache_warns_and_still_returns_the_profile(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: FAKE)
    with pytest.warns(UserWarning, match="could not cache the measured 'local' profile"):
        profile = get_profile("local")
    assert profile == profile_from_measurements(FAKE)


def test_a_failed_local_profile_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: FAKE)
    monkeypatch.setattr(devices.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        get_profile("local")
    assert [p.name for p in (tmp_path / "anee-lite").iterdir()] == []


def test_the_readme_device_table_is_the_one_the_profiles_build():
    """No hand-copied numbers: the README's table is device_table()'s output for smollm2-135m's sizes."""
    from pathlib import Path

    from conftest import SMOLLM2_DIMS

    from anee_lite.cost.simulator import device_table

    table = device_table(SMOLLM2_DIMS)
    assert table in (Path(__file__).parents[2] / "README.md").read_text(), table
    assert table.count("\n| `") == len(PROFILES)  # one row per shipped profile
    only_t4 = device_table(SMOLLM2_DIMS, {"t4": PROFILES["t4"]})
    assert only_t4.splitlines()[2] == table.splitlines()[2] and len(only_t4.splitlines()) == 3


def test_a_shipped_device_is_one_file(tmp_path, monkeypatch):
    """Every module of anee_lite.cost.profiles is one device; a new file there is found with nothing else edited."""
    import importlib
    import shutil
    import sys
    from pathlib import Path

    from anee_lite.cost import profiles

    package = Path(profiles.__file__).parent
    files = sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    assert len(files) == len(profiles.PROFILES) == len({importlib.import_module(f"anee_lite.cost.profiles.{f}")
                                                        .PROFILE.name for f in files})
    copy = tmp_path / "anee_lite_profiles_copy"  # the package copied, plus one new device file
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.glob("*.py"):
        path.write_text(path.read_text().replace("from ..device_profile", "from anee_lite.cost.device_profile"))
    (copy / "my_npu.py").write_text((copy / "t4.py").read_text().replace('name="t4"', 'name="my-npu"')
                                    .replace("ORDER = 1", "ORDER = 99"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = importlib.import_module("anee_lite_profiles_copy").PROFILES
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "anee_lite_profiles_copy"]:
            del sys.modules[name]
    assert list(found) == [*profiles.PROFILES, "my-npu"]


def test_a_profile_cached_by_an_older_measurement_method_is_measured_again(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(devices, "local_cache_path", lambda: tmp_path / "device-local.json")
    calls = []
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: calls.append(1) or FAKE)
    old_key = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "method": devices.MEASUREMENT_METHOD - 1}
    stale = devices.profile_from_measurements(FAKE).as_dict() | {"op_overhead_s": 1.8e-6}
    (tmp_path / "device-local.json").write_text(json.dumps({"key": old_key, "profile": stale}))
    assert devices.local_profile().op_overhead_s == FAKE.op_overhead_s and calls == [1]
    assert devices.local_profile() == devices.local_profile() and calls == [1]  # the new one is cached


def test_quick_check_times_products_and_calls_quickly():
    import time

    start = time.perf_counter()
    check = REAL_QUICK_CHECK()
    assert time.perf_counter() - start < 5  # about 0.1 s on this project's machines; it runs at every read
    assert set(check) == {"matvec_s", "op_s"} and 0 < check["op_s"] < check["matvec_s"] < 1


def test_drift_names_what_moved_beyond_the_tolerance_either_way():
    assert devices.drift(STEADY, {"matvec_s": 2.4e-3, "op_s": 0.85e-6}) is None  # within 1.25x both ways
    slower = devices.drift(STEADY, {"matvec_s": 4e-3, "op_s": 1e-6})
    assert "one-row products" in slower and "2.00x" in slower and "operator call" not in slower
    faster = devices.drift(STEADY, {"matvec_s": 2e-3, "op_s": 0.25e-6})
    assert "tiny operator call now takes 0.25x" in faster


def test_a_cached_profile_is_measured_again_when_the_machine_no_longer_runs_as_it_did(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: calls.append(1) or FAKE)
    get_profile("local")
    assert json.loads((tmp_path / "anee-lite" / "device-local.json").read_text())["check"] == STEADY
    monkeypatch.setattr(devices, "quick_check", lambda: {"matvec_s": 2.2e-3, "op_s": 1.1e-6})  # 10%: noise
    get_profile("local")
    assert calls == [1]
    monkeypatch.setattr(devices, "quick_check", lambda: {"matvec_s": 5e-3, "op_s": 1e-6})  # 2.5x slower: stale
    with pytest.warns(UserWarning, match=r"no longer matches this machine \(one-row products .* 2.50x"):
        get_profile("local")
    assert calls == [1, 1]
    stored = json.loads((tmp_path / "anee-lite" / "device-local.json").read_text())["check"]
    assert stored == {"matvec_s": 5e-3, "op_s": 1e-6}  # the new measurement's own check is kept with it
    get_profile("local")
    assert calls == [1, 1]


def test_a_cache_without_a_check_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(devices, "run_micro_benchmark", lambda **kw: calls.append(1) or FAKE)
    get_profile("local")
    path = tmp_path / "anee-lite" / "device-local.json"
    cached = json.loads(path.read_text())
    del cached["check"]
    path.write_text(json.dumps(cached))
    get_profile("local")
    assert calls == [1, 1]
