"""The numbers stored in notebook 04's outputs agree with each other and with the cost model.

Timings are never re-measured here (they depend on the machine); what is checked is that the stored
per-layer time, fixed part and unembedding come from one consistent measurement, that every derived
number printed next to them follows from them, and that the FLOPs and joules equal the cost model's.
"""

import json
import pathlib
import re

import pytest
from conftest import SMOLLM2_DIMS

from anee_lite import budget_exit_layer
from anee_lite.cost import token_cost

NOTEBOOK = pathlib.Path(__file__).parents[2] / "notebooks" / "04_kv_cache_and_cost.ipynb"
SMOLLM2 = SMOLLM2_DIMS
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


@pytest.fixture(scope="module")
def stored() -> str:
    """All the text outputs of notebook 04, one string."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    texts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")) if out["output_type"] == "stream"
                         else "".join(out.get("data", {}).get("text/plain", "")))
    text = "\n".join(texts)
    if "SmolLM2-135M-Instruct" not in text:
        pytest.skip("notebook 04 was stored with another model")
    return text


def find(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, f"notebook 04's outputs no longer print {pattern!r}"
    return [float(g) for g in match.groups()]


def test_timings_come_from_one_consistent_fit(stored):
    per_layer, fixed = find(rf"fit: per layer {NUMBER} ms, fixed part {NUMBER} ms", stored)
    unembed, unembed_layers = find(rf"unembedding timed alone in the same rounds: {NUMBER} ms = {NUMBER} layers",
                                   stored)
    rows = [[float(x) for x in m] for m in re.findall(
        rf"(\d+) layers: measured +{NUMBER} ms, fitted line +{NUMBER} ms, measured / fitted {NUMBER}", stored)]
    assert len(rows) >= 3
    depths, measured = [r[0] for r in rows], [r[1] for r in rows]
    # the printed line is the least-squares line through the printed points
    mean_x, mean_y = sum(depths) / len(depths), sum(measured) / len(measured)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(depths, measured))
             / sum((x - mean_x) ** 2 for x in depths))
    assert per_layer == pytest.approx(slope, abs=0.02, rel=0.02)
    assert fixed == pytest.approx(mean_y - slope * mean_x, abs=0.1, rel=0.02)
    for L, m, f, ratio in rows:
        assert f == pytest.approx(fixed + L * per_layer, abs=0.005 * (L + 1) + 0.01)  # both printed to 0.01 ms
        assert ratio == pytest.approx(m / f, abs=0.011)
        assert 0.8 <= ratio <= 1.2, f"the line does not explain the step time at {L} layers"
    assert per_layer > 0 and fixed > 0
    assert unembed_layers == pytest.approx(unembed / per_layer, abs=0.06, rel=0.02)
    assert unembed <= fixed + per_layer, "the unembedding is paid inside the fixed part of every step"


def test_cached_generation_agrees_with_the_timed_full_depth_step(stored):
    (cached,) = find(rf"median time per new token, with the cache: +{NUMBER} ms", stored)
    full_depth = [float(m) for L, m in re.findall(rf"(\d+) layers: measured +{NUMBER} ms", stored)
                  if int(L) == SMOLLM2.n_layers]
    assert full_depth, "section 4 no longer times the full depth"
    assert 0.5 <= cached / full_depth[0] <= 2.0, "two timings of the same full-depth step disagree"
    (recomputed, ratio) = find(rf"without the cache: +{NUMBER} ms \({NUMBER}x the cached time\)", stored)
    assert ratio == pytest.approx(recomputed / cached, abs=0.06)


def test_flops_and_joules_equal_the_cost_model(stored):
    (by_flops,) = find(rf"the unembedding costs as many FLOPs as {NUMBER} layers", stored)
    (by_flops_again,) = find(rf"\(by FLOPs: {NUMBER} layers\)", stored)
    one_layer = token_cost(SMOLLM2, layers_run=1, context_len=64, unembed=False)
    full = token_cost(SMOLLM2, layers_run=30, context_len=64)
    assert by_flops == by_flops_again == round(full.lm_head / one_layer.macs, 1)
    rows = re.findall(rf"energy_budget=([0-9.]+) +-> +(\d+) layers -> +{NUMBER} mJ per token", stored)
    assert len(rows) >= 3
    for budget, layers, mj in rows:
        assert int(layers) == budget_exit_layer(30, float(budget))
        cost = token_cost(SMOLLM2, layers_run=int(layers), context_len=64)
        assert float(mj) == pytest.approx(cost.energy_joules() * 1e3, abs=0.06)
