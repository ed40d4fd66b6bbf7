"""Notebook 06's explorer callback and widgets, and its benchmark loader, without a browser."""

import pytest
import torch
from conftest import VOCAB, random_llama

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.core.metrics import perplexity
from anee_lite.notebook.sparsity import activation_spec, sparsity_explorer, sparsity_view
from anee_lite.sparsity import block_influence, calibrate_activation_thresholds, layers_to_skip
from anee_lite.sparsity.evaluate import mask_cost


class CharTokenizer:
    """Enough of a tokenizer for generate(): one token per character."""

    eos_token_id = None
    pad_token_id = 0

    def __call__(self, text):
        return {"input_ids": [1 + ord(c) % (VOCAB - 1) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(65 + i % 26) for i in ids)


@pytest.fixture(scope="module")
def wrapper():
    return ANEEWrapper(ANEEConfig(min_layers=0), hf_model=random_llama(n_layers=4), tokenizer=CharTokenizer())


def test_view_matches_the_library(wrapper):
    dims = wrapper.model.dims
    ids = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    influence = block_influence(wrapper.model, ids)
    head_mask = torch.ones(dims.n_layers, dims.n_heads)
    head_mask[2, 1] = 0
    view = sparsity_view(wrapper, "abc", head_mask, 1, 0.5, influence, ids, max_new_tokens=5)
    skip = layers_to_skip(influence, 1)
    masks = {"skip_layers": skip, "head_mask": head_mask, "activation_sparsity": wrapper.activation_thresholds(0.5)}
    assert view["skip_layers"] == skip
    assert view["text"] == wrapper.generate(prompt="abc", max_new_tokens=5, masks=masks)
    assert view["perplexity"] == pytest.approx(perplexity(wrapper.model(ids, **masks).logits, ids))
    assert view["flops_fraction"] == pytest.approx(
        mask_cost(dims, context_len=20, skip_layers=skip, head_mask=head_mask, activation_sparsity=0.5)[
            "flops_fraction"])
    assert view["flops_fraction"] < 1
    assert view["heads_off"] == (0 if 2 in skip else 1)
    assert f"{view['perplexity']:.2f}" in view["stats_html"]
    plain = sparsity_view(wrapper, "abc", torch.ones(dims.n_layers, dims.n_heads), 0, 0.0, influence, ids, 5)
    assert plain["flops_fraction"] == pytest.approx(1.0) and plain["perplexity"] == pytest.approx(
        plain["full_perplexity"])


def test_explorer_builds_and_reacts(wrapper):
    pytest.importorskip("ipywidgets")
    dims = wrapper.model.dims
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    box = sparsity_explorer(wrapper, block_influence(wrapper.model, ids), ids, prompt="ab", max_new_tokens=3)

    def find(widget, pred):
        if pred(widget):
            return [widget]
        return [w for child in getattr(widget, "children", ()) for w in find(child, pred)]

    stats = find(box, lambda w: "anee-sparsity-stats" in getattr(w, "_dom_classes", ()))[0]
    head = find(box, lambda w: "anee-head-1-2" in getattr(w, "_dom_classes", ()))[0]
    slider = find(box, lambda w: getattr(w, "description", "") == "activation_sparsity")[0]
    before = stats.value
    assert "0 heads off" in before
    head.value = False
    assert "1 heads off" in stats.value
    slider.value = 0.5
    assert stats.value != before
    assert len(find(box, lambda w: any(c.startswith("anee-head-") for c in getattr(w, "_dom_classes", ())))) \
        == dims.n_layers * dims.n_heads


def test_view_uses_one_set_of_calibrated_thresholds_for_text_and_perplexity():
    """A wrapper with calibrated thresholds: the text and the perplexity both run under that one object."""
    wrapper = ANEEWrapper(ANEEConfig(min_layers=0), hf_model=random_llama(n_layers=4), tokenizer=CharTokenizer())
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(3))
    made = []

    def activation_thresholds(fraction):
        made.append(calibrate_activation_thresholds(wrapper.model, ids, fraction))
        return made[-1]

    wrapper.activation_thresholds = activation_thresholds  # counts the calls (the real one is tested elsewhere)
    influence = block_influence(wrapper.model, ids)
    head_mask = torch.ones(wrapper.model.dims.n_layers, wrapper.model.dims.n_heads)
    view = sparsity_view(wrapper, "abcd", head_mask, 0, 0.6, influence, ids, max_new_tokens=6)
    assert len(made) == 1 and view["activation"] is made[0]
    masks = {"skip_layers": [], "head_mask": head_mask, "activation_sparsity": made[0]}
    assert view["text"] == wrapper.generate(prompt="abcd", max_new_tokens=6, masks=masks)
    assert view["perplexity"] == pytest.approx(perplexity(wrapper.model(ids, **masks).logits, ids))
    by_sort = perplexity(wrapper.model(ids, **{**masks, "activation_sparsity": 0.6}).logits, ids)
    assert view["perplexity"] != pytest.approx(by_sort)  # the thresholds, not the per-token sort, made it
    assert "calibrated thresholds" in view["stats_html"]
    assert activation_spec(wrapper, 0.0) is None


def test_benchmark_loader_reads_a_run_and_says_when_there_is_none(tmp_path, capsys, monkeypatch):
    import json

    from anee_lite.notebook.sparsity import BENCHMARK_ENV, lever_lines, load_benchmark

    quality = {"agreement": 0.75, "perplexity": 12.5}
    row = {"lever": "layer skipping", "label": "skip 2 layers", "target": 0.9, "reached": True,
           "flops_fraction": 0.9, "bytes_fraction": 0.9, "wall_ratio": 0.8,
           "python_docs_heldout": quality, "kjv_heldout": {"agreement": 0.5, "perplexity": 20.0}}
    run = {"model": "tiny", "tokens": 16, "repeats": 2, "decode_tokens": 4,
           "rows": [row, {**row, "lever": "head pruning", "reached": False}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(run))
    monkeypatch.setenv(BENCHMARK_ENV, str(path))
    assert load_benchmark() == run
    assert "1 reach their cost point" in capsys.readouterr().out
    (line,) = lever_lines(run, "layer skipping")
    assert "docs agreement 0.750" in line and "KJV agreement 0.500" in line and "1.25x" in line
    assert lever_lines(run, "head pruning") == ["(no reached setting of 'head pruning' in this run)"]
    assert load_benchmark(tmp_path / "missing.json") is None
    assert "No benchmark results" in capsys.readouterr().out
    path.write_text("{")
    assert load_benchmark(path) is None
    assert "not valid JSON" in capsys.readouterr().out


def test_plots_draw_and_name_wrong_arguments():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anee_lite.notebook import sparsity as sp

    sp.plot_block_influence(torch.rand(5), skipped=[2, 3])
    sp.plot_quality_curves({"a": [(0, 1.0), (2, 0.5)], "b": [(0, 1.0)]}, "layers skipped")
    sp.plot_head_importance(torch.rand(3, 6), 2, mask=torch.ones(3, 6))
    sp.plot_activation_magnitudes(torch.randn(2, 7, 16), {"50%": 0.7})
    row = {"lever": "layer skipping", "reached": True, "flops_fraction": 0.9,
           "python_docs_heldout": {"agreement": 0.6}, "kjv_heldout": {"agreement": 0.5}}
    sp.plot_sparsity_pareto({"rows": [row]}, "kjv_heldout")
    plt.close("all")
    for call, error, match in [
        (lambda: sp.plot_block_influence([0.1, 0.2]), TypeError, "influence"),
        (lambda: sp.plot_quality_curves({"a": [0.5]}, "x"), TypeError, "curves"),
        (lambda: sp.plot_head_importance(torch.rand(3), 1), TypeError, "scores"),
        (lambda: sp.plot_head_importance(torch.rand(3, 6), 2, mask=torch.ones(6, 3)), ValueError, "mask"),
        (lambda: sp.plot_activation_magnitudes(torch.randn(4), [0.5]), TypeError, "thresholds"),
        (lambda: sp.plot_sparsity_pareto({}), ValueError, "rows"),
        (lambda: sp.plot_sparsity_pareto({"rows": [row]}, "wiki"), ValueError, "text"),
    ]:
        with pytest.raises(error, match=match):
            call()
