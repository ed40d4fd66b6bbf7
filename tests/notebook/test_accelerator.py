"""Notebook 07's explorer callback, plots, widgets and exercise checks."""

from __future__ import annotations

import math

import pytest
from conftest import SMOLLM2_DIMS

from anee_lite import budget_exit_layer
from anee_lite.cost.charges import layer_weight_params
from anee_lite.cost.devices import PROFILES
from anee_lite.cost.simulator import simulate_decode
from anee_lite.notebook import virtual_accelerator as acc
from anee_lite.notebook.exercises import (
    ExerciseError,
    check_crossover_batch,
    check_exit_speedup,
    check_matvec_intensity,
)

DIMS = SMOLLM2_DIMS


@pytest.mark.parametrize("device,budget,batch,context", [("t4", 1.0, 1, 128), ("h100-sxm", 0.5, 16, 1024),
                                                        ("raspberry-pi-5", 0.0, 1, 1)])
def test_view_matches_the_simulator(device, budget, batch, context):
    view = acc.accelerator_view(DIMS, PROFILES, device, budget, batch, context)
    layers = budget_exit_layer(30, budget, 2, 0.1)
    expected = simulate_decode(DIMS, PROFILES[device], layers=layers, context=context, batch=batch, dtype="fp16")
    assert view["layers"] == layers
    assert view["seconds_per_token"] == pytest.approx(expected.seconds_per_token)
    assert view["joules_per_token"] == pytest.approx(expected.joules_per_token)
    assert f"{1e3 * expected.seconds_per_token:.3f} ms/token" in view["html"]
    assert f"{layers}/30 layers" in view["html"]


def test_view_refuses_unknown_device_and_bad_knobs():
    with pytest.raises(ValueError, match="device"):
        acc.accelerator_view(DIMS, PROFILES, "abacus", 1.0, 1, 128)
    with pytest.raises(ValueError, match="batch"):
        acc.accelerator_view(DIMS, PROFILES, "t4", 1.0, 0, 128)


def test_devices_change_the_answer():
    times = {d: acc.accelerator_view(DIMS, PROFILES, d, 1.0, 1, 128)["seconds_per_token"] for d in PROFILES}
    assert len(set(times.values())) == len(times)


def test_explorer_updates_on_dropdown_and_sliders():
    pytest.importorskip("ipywidgets")
    box = acc.accelerator_explorer(DIMS, PROFILES, device="t4")
    device, energy, batch, context, result, _plot = box.children
    assert device.description == "device" and "t4" in result.value
    device.value = "a100-40gb"
    assert "a100-40gb" in result.value
    energy.value = 0.5
    assert f"{budget_exit_layer(30, 0.5, 2, 0.1)}/30 layers" in result.value
    batch.value = 8
    context.value = 512
    expected = simulate_decode(DIMS, PROFILES["a100-40gb"], layers=budget_exit_layer(30, 0.5, 2, 0.1), context=512,
                               batch=8, dtype="fp16")
    assert f"{1e3 * expected.seconds_per_token:.3f} ms/token" in result.value


def test_plots_draw():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    for fig in (acc.plot_roofline(DIMS, PROFILES), acc.plot_exit_savings(DIMS, PROFILES["t4"]),
                acc.plot_energy_per_token(DIMS, PROFILES)):
        assert fig.axes
        plt.close(fig)


def test_check_matvec_intensity(capsys):
    check_matvec_intensity(lambda i, o, b: 2 / b)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="two"):
        check_matvec_intensity(lambda i, o, b: 1 / b)  # forgot the add
    with pytest.raises(ExerciseError, match="Count 2 FLOPs"):
        check_matvec_intensity(lambda i, o, b: 2 / b if i < 1000 else 2)  # tuned to the first shapes
    check_matvec_intensity(lambda i, o, b: None)
    assert "not answered yet" in capsys.readouterr().out


def test_check_exit_speedup(capsys):
    def right(dims, layers, b):
        p = layer_weight_params(dims)
        per, head = (p["qkv_o"] + p["mlp"]) * b, dims.d_model * dims.d_vocab * b
        return (dims.n_layers * per + head) / (layers * per + head)

    check_exit_speedup(right, DIMS)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="unembedding"):
        check_exit_speedup(lambda dims, layers, b: dims.n_layers / layers, DIMS)  # forgot the head
    with pytest.raises(ExerciseError, match="unembedding"):
        check_exit_speedup(lambda dims, layers, b: right(dims, max(1, layers - 1), b), DIMS)  # one layer off


def test_check_crossover_batch(capsys):
    def right(p, b):
        return max(1, math.ceil(p.flops_per_second("fp16") / p.bytes_per_second() * b / 2))

    check_crossover_batch(right, PROFILES)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="ridge point"):  # peaks, not achievable rates
        check_crossover_batch(lambda p, b: math.ceil(p.peak_flops["fp16"] / p.memory_bandwidth * b / 2), PROFILES)
    with pytest.raises(ExerciseError, match="round up"):
        check_crossover_batch(lambda p, b: math.floor(p.flops_per_second("fp16") / p.bytes_per_second() * b / 2),
                              PROFILES)


def test_accelerator_checks_never_print_the_expected_answer():
    """A wrong answer's message gives a hint, not the number to type in."""
    ridges = {str(max(1, math.ceil(p.flops_per_second("fp16") / p.bytes_per_second() * b / 2)))
              for p in PROFILES.values() for b in (2.0, 1.0)}
    for check, args, answers in [(check_matvec_intensity, (), {"0.5", "2.0", "4.0"}),
                                 (check_exit_speedup, (DIMS,), {"1.0", "1.000"}),
                                 (check_crossover_batch, (PROFILES,), ridges)]:
        with pytest.raises(ExerciseError) as exc:
            check(lambda *a: -1, *args)
        assert not answers & set(str(exc.value).replace(",", " ").split()), (check.__name__, str(exc.value))


def test_energy_plot_draws_totals_on_a_log_axis_and_shares_on_a_linear_one():
    """Stacked bars on a log axis misdraw the parts: the split is drawn as shares of each total instead."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    fig = acc.plot_energy_per_token(DIMS, PROFILES)
    total_ax, share_ax = fig.axes
    assert total_ax.get_yscale() == "log" and share_ax.get_yscale() == "linear"
    n = len(PROFILES)
    heights = [bar.get_height() for bar in share_ax.patches]  # 3 parts x n devices, part by part
    for device in range(n):
        assert sum(heights[part * n + device] for part in range(3)) == pytest.approx(1.0)
    for device, name in enumerate(PROFILES):
        r = simulate_decode(DIMS, PROFILES[name], context=128, dtype="fp16", kernels="fused")
        assert total_ax.patches[device].get_height() == pytest.approx(1e3 * r.joules)  # the simulator's total
    plt.close(fig)
