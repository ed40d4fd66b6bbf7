"""Adding a controller is one class: registered here, it runs through forward, calibration, evaluate and the CLI."""


import pytest
import torch
from conftest import CharTokenizer, random_llama

from anee_lite import UnrolledModel
from anee_lite.adaptive import controller_names, evaluate, make_controller
from anee_lite.adaptive.calibration import build_replay, calibrate
from anee_lite.adaptive.controllers import REGISTRY, ExitController, register
from anee_lite.core.controller import Controller
from anee_lite.lens import LogitLens


class NormExit(ExitController):
    """Toy: stop when the residual's RMS reaches ``threshold`` (one d_model-long reduction per check)."""

    name = "toy_norm"
    default_threshold = 1.0

    @property
    def probe_macs_per_check(self):
        return self.lens.model.dims.d_model

    def score(self, layer, resid):
        return resid.pow(2).mean(-1).sqrt()  # [B, T, d] -> [B, T]


@pytest.fixture
def registered():
    register(NormExit)
    yield NormExit
    del REGISTRY[NormExit.name]


@pytest.fixture(scope="module")
def tiny():
    return UnrolledModel(random_llama(n_layers=4, d_model=16))


def test_a_registered_toy_controller_runs_everywhere(registered, tiny, tmp_path):
    assert "toy_norm" in controller_names()
    c = make_controller("toy_norm", LogitLens(tiny))
    assert isinstance(c, Controller) and c.threshold == 1.0  # the class's default

    ids = torch.randint(2, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    full = tiny.forward(ids, return_resid=True)
    c.threshold = float(full.resid_stack()[2].pow(2).mean(-1).sqrt().median())  # about half stop at layer 2
    out = tiny.forward(ids, controller=c)
    exits = out.stats.exit_layers
    assert bool((exits < tiny.dims.n_layers).any())
    fixed = tiny.forward(ids, exit_layers=exits)  # the same exits, forced: same logits (no lens, plain readout)
    torch.testing.assert_close(out.logits, fixed.logits)

    replay = build_replay(tiny, list(ids[:1].split(9, dim=1)))
    result = calibrate(replay, c, target_agreement=0.5)
    assert result.controller == "toy_norm" and result.curve

    r = evaluate(tiny, CharTokenizer(48), "hello world, " * 4, "toy_norm", calibration_text="some calibration text " * 3,
                 speed_check_tokens=0,
                 target_agreement=0.8, max_tokens=30, chunk=15)
    assert r.controller == "toy_norm" and r.tokens == 30
    assert r.lens_checks_per_token == 0 and r.probe_checks_per_token > 0  # charged as cheap checks

    from anee_lite.cli import build_parser
    args = build_parser().parse_args(["evaluate", "--model", "m", "--text", "t", "--controller", "toy_norm",
                                      "--json", str(tmp_path / "o.json")])
    assert args.controller == "toy_norm"


def test_a_name_is_registered_once(registered):
    class Other(NormExit):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register(Other)


def test_a_plain_function_is_a_controller_and_anything_else_is_refused(tiny):
    ids = torch.tensor([[3, 4, 5]])
    out = tiny.forward(ids, controller=lambda layer, resid, active: torch.full_like(active, layer == 2))
    assert out.stats.exit_layers.tolist() == [[2, 2, 2]]
    torch.testing.assert_close(out.logits, tiny.forward(ids, exit_layers=2).logits)
    with pytest.raises(TypeError, match="controller must implement"):
        tiny.forward(ids, controller="confidence")
