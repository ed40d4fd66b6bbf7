"""The equal-cost planning and the benchmark's table on a small random model."""

import pytest
import torch
from conftest import VOCAB, random_llama

from anee_lite import UnrolledModel
from anee_lite.sparsity.evaluate import (
    LEVERS,
    best_levers,
    closest,
    compute_scores,
    decode_time_ratio,
    format_table,
    plan_levers,
    quality,
    timed_model,
)


@pytest.fixture(scope="module")
def setup():
    hf = random_llama(n_layers=6, n_heads=4, n_kv_heads=2)
    model = UnrolledModel(hf)
    ids = torch.randint(0, VOCAB, (1, 32), generator=torch.Generator().manual_seed(0))
    return hf, model, ids, compute_scores(model, ids)


@pytest.mark.slow
def test_each_lever_gets_the_setting_closest_to_each_cost_point(setup):
    hf, model, ids, scores = setup
    settings = plan_levers(model, scores, [0.9, 0.7], context_len=16)
    assert [s.lever for s in settings[::2]] == list(LEVERS)
    for s in settings:
        assert s.target in (0.9, 0.7)
        assert s.reached == (abs(s.flops_fraction - s.target) <= 0.03)
        if s.lever == "combination":
            assert s.flops_fraction <= s.target + 0.015
    exit_07 = next(s for s in settings if s.lever == "static exit" and s.target == 0.7)
    assert exit_07.forward_kwargs["exit_layers"] in range(1, 7)
    full = model(ids).logits
    for s in settings:  # every planned setting runs, and the pruned model it times gives the same logits
        q = quality(model, ids, full, s.forward_kwargs)
        assert 0 <= q["agreement"] <= 1 and q["perplexity"] > 0
        if s.lever in ("head pruning", "neuron pruning", "combination") and s.reached:
            runner, kwargs = timed_model(model, hf, s)
            assert (runner(ids, **kwargs).logits - model(ids, **{k: v for k, v in s.forward_kwargs.items()
                                                                  if v is not None}).logits).abs().max() < 1e-4


def test_closest_marks_unreachable_points():
    from anee_lite.sparsity.evaluate import Setting

    grid = [Setting("x", "a", {}, 0.95, 0.95), Setting("x", "b", {}, 0.85, 0.85)]
    assert closest(grid, 0.86).label == "b" and closest(grid, 0.86).reached
    assert not closest(grid, 0.5).reached


def test_decode_time_ratio_is_about_one_for_the_same_model(setup):
    _, model, ids, _ = setup
    r = decode_time_ratio(model, model, ids[:, :12], {}, n_prompt=4, repeats=3)
    assert r["wall_ratio"] > 0 and r["ms_per_token"] > 0


def test_table_and_best_lever():
    row = {"lever": "layer skipping", "label": "skip 3", "target": 0.9, "reached": True, "flops_fraction": 0.9,
           "bytes_fraction": 0.91, "wall_ratio": 0.93, "python_docs_heldout": {"agreement": 0.8, "perplexity": 5.0},
           "kjv_heldout": {"agreement": 0.7, "perplexity": 9.0}}
    other = {**row, "lever": "static exit", "python_docs_heldout": {"agreement": 0.5, "perplexity": 9.0},
             "kjv_heldout": {"agreement": 0.75, "perplexity": 8.0}}
    missing = {**row, "lever": "head pruning", "reached": False}
    results = {"n_layers": 30, "full": {"python_docs_heldout": {"perplexity": 4.0}, "kjv_heldout": {"perplexity": 7.0}},
               "rows": [row, other, missing]}
    table = format_table(results)
    assert "| 0.9 | layer skipping | skip 3 | 0.900 | 0.910 | 0.93 | 0.800 / 0.700 | 5.00 / 9.00 |" in table
    assert "cannot reach it" in table
    best = best_levers(results)
    assert best[(0.9, "python_docs_heldout")]["lever"] == "layer skipping"
    assert best[(0.9, "kjv_heldout")]["lever"] == "static exit"


def test_matvec_table_times_every_fraction_and_says_what_runs():
    from anee_lite.core.masks import ROW_SKIP_MIN_SPARSITY
    from anee_lite.sparsity.speed import matvec_table

    rows = matvec_table(32, 16, (0.0, 0.5, 0.9), matrix="W_O", repeats=1, inner=2)
    assert [r["fraction"] for r in rows] == [0.0, 0.5, 0.9]
    for r in rows:
        assert r["dense_us"] > 0 and r["rows_us"] > 0 and r["gather_us"] > 0 and r["select_us"] > 0
        assert r["rows_speedup"] == pytest.approx(r["dense_us"] / r["rows_us"])
        assert r["used"] == ("rows" if r["fraction"] >= ROW_SKIP_MIN_SPARSITY["W_O"] else "dense")
    with pytest.raises(ValueError, match="fractions"):
        matvec_table(8, 8, (0.5, 1.5), repeats=1, inner=1)
    with pytest.raises(TypeError, match="fractions"):
        matvec_table(8, 8, "0.5", repeats=1, inner=1)
    with pytest.raises(ValueError, match="d_in"):
        matvec_table(0, 8)
    with pytest.raises(ValueError, match="matrix"):
        matvec_table(8, 8, (0.5,), matrix="W_U")


def test_decode_speed_times_the_wrappers_generate():
    from conftest import VOCAB, random_llama

    from anee_lite import ANEEConfig, ANEEWrapper
    from anee_lite.sparsity.speed import decode_speed

    class CharTokenizer:
        eos_token_id, pad_token_id = None, 0

        def __call__(self, text):
            return {"input_ids": [1 + ord(c) % (VOCAB - 1) for c in text]}

        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(65 + i % 26) for i in ids)

    wrapper = ANEEWrapper(ANEEConfig(min_layers=0), hf_model=random_llama(n_layers=2), tokenizer=CharTokenizer())
    got = decode_speed(wrapper, "abc", [0.0, 0.3], max_new_tokens=3, rounds=2)
    assert set(got) == {0.0, 0.3} and got[0.0]["speedup"] == 1.0
    assert got[0.3]["speedup"] == pytest.approx(got[0.0]["seconds_per_token"] / got[0.3]["seconds_per_token"])
    assert got[0.0]["text"] == wrapper.tokenizer.decode(
        wrapper.generate(prompt="abc", max_new_tokens=3, return_result=True).sequences[0, 3:].tolist())


def test_format_activation_shows_every_matrix_and_sparsity():
    from anee_lite.sparsity.evaluate import format_activation

    def mv(f, used):
        return {"fraction": f, "rows_speedup": 1 + f, "used": used}

    quality = {"agreement": 0.5, "perplexity": 20.0}
    results = {"activation": {
        "shapes": {"W_QKV": [4, 12], "W_out": [8, 4]},
        "matvec": {"W_QKV": [mv(0.0, "dense"), mv(0.5, "rows")], "W_out": [mv(0.0, "dense"), mv(0.5, "rows")]},
        "decode": [{"fraction": 0.5, "ms_per_token": 12.34, "speedup": 1.25, "python_docs_heldout": quality,
                    "kjv_heldout": {"agreement": 0.25, "perplexity": 30.0}}]}}
    text = format_activation(results)
    assert "| `W_QKV` [4, 12] | 1.00x | **1.50x** |" in text
    assert "| 50% | 12.3 | 1.25x | 0.500 / 0.250 | 20.00 / 30.00 |" in text
