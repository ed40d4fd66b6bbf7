"""The benchmarks' rule for shipped results: the load is recorded, and a busy machine may not overwrite them."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import machine


def test_machine_records_the_load_before_the_run():
    about = machine.machine()
    assert len(about["load_before"]) == 3 and all(x >= 0 for x in about["load_before"])
    assert about["torch_threads"] >= 1 and about["machine"]


@pytest.mark.parametrize("load, shipped, force, refused", [
    (1.5, True, False, True),  # busy machine, shipped file: refused
    (1.5, True, True, False),  # --force records it anyway
    (1.5, False, False, False),  # a file of one's own: always written
    (0.4, True, False, False),  # quiet: written
    (1.0, True, False, False),  # the limit itself still counts as quiet
])
def test_shipped_results_need_a_quiet_machine(load, shipped, force, refused):
    if refused:
        with pytest.raises(SystemExit, match="load is 1.50"):
            machine.refuse_unless_quiet([load, 0.0, 0.0], shipped=shipped, force=force)
    else:
        machine.refuse_unless_quiet([load, 0.0, 0.0], shipped=shipped, force=force)


@pytest.mark.parametrize("script", sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py")),
                         ids=lambda p: p.name)
def test_every_benchmark_that_writes_results_records_the_load(script):
    """A benchmark that writes JSON records the load before (machine()) and after its run."""
    source = script.read_text()
    if "write_atomically" not in source and "json.dump" not in source:
        pytest.skip(f"{script.name} writes no results")
    assert "machine()" in source and "load_after" in source and "getloadavg" in source
