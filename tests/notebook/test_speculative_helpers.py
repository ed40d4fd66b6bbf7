"""Notebook 08's exercise checks, slider callback, widget and plots, on a tiny random GPT-2."""

import matplotlib
import pytest

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.notebook.exercises import ExerciseError, check_accept, check_expected_tokens
from anee_lite.notebook.self_speculative import (
    plot_acceptance_by_depth,
    plot_predicted_speedup,
    speculative_explorer,
    speculative_view,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_folder):
    return ANEEWrapper(ANEEConfig(model_name=str(tiny_gpt2_folder)))


def good_accept(drafts, full):
    out = []
    for d, f in zip(drafts, full):
        if d != f:
            break
        out.append(d)
    return out + [full[len(out)]]


def test_check_accept_passes_a_correct_rule_and_fails_wrong_ones(capsys):
    check_accept(good_accept)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="keep drafts while"):
        check_accept(lambda drafts, full: [d for d, f in zip(drafts, full) if d == f] + [full[-1]])
    with pytest.raises(ExerciseError, match="full model's own token"):
        check_accept(lambda drafts, full: good_accept(drafts, full)[:-1])  # forgets the full model's token


def test_check_expected_tokens(capsys):
    def formula(a, k):
        return float(k + 1) if a == 1 else (1 - a ** (k + 1)) / (1 - a)

    check_expected_tokens(formula)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="plus one token always"):
        check_expected_tokens(lambda a, k: 1 / (1 - a) if a < 1 else k)  # the infinite-K limit
    with pytest.raises(ExerciseError, match="0/0"):
        check_expected_tokens(lambda a, k: formula(a, k) if a < 1 else float(k))  # one token short at a = 1
    with pytest.raises(ExerciseError) as exc:
        check_expected_tokens(lambda a, k: 0.5)
    assert "expected" not in str(exc.value) and "1.0" not in str(exc.value).split()


def _boom(*args):
    raise RuntimeError("boom")


@pytest.mark.parametrize("answer", [_boom, 3, lambda *a: 7, lambda *a: "57"])
def test_check_accept_gives_one_line_errors_for_wrong_kinds_of_answers(answer):
    with pytest.raises(ExerciseError, match="^Accept: "):
        check_accept(answer)


@pytest.mark.parametrize("answer", [_boom, 3, lambda *a: float("nan"), lambda *a: [1, 2]])
def test_check_expected_tokens_gives_one_line_errors_for_wrong_kinds_of_answers(answer):
    # NaN used to pass: abs(nan - expected) > tolerance is False.
    with pytest.raises(ExerciseError, match="^Expected tokens: "):
        check_expected_tokens(answer)


@pytest.mark.parametrize("check", [check_accept, check_expected_tokens])
@pytest.mark.parametrize("answer", [None, lambda *a: None])
def test_checks_wait_for_an_answer(check, answer, capsys):
    check(answer)
    assert "not answered yet" in capsys.readouterr().out


def test_speculative_view_matches_the_library(tiny):
    view = speculative_view(tiny, "The quick brown fox", 1, 3, "logit", max_new_tokens=8)
    full = tiny.generate(prompt="The quick brown fox", max_new_tokens=8, exit_budget_threshold=0.0, min_layers=0)
    assert view["same_text"] and view["text"] == full
    result = tiny.generate(prompt="The quick brown fox", max_new_tokens=8, draft_layers=1, draft_tokens=3,
                           return_result=True)
    assert view["acceptance"] == pytest.approx(result.speculative.acceptance_rate, nan_ok=True)
    assert view["spec_tokens_per_s"] > 0 and view["full_tokens_per_s"] > 0
    assert "same text as full depth: True" in view["html"]


def test_speculative_view_refuses_bad_knobs(tiny):
    with pytest.raises(ValueError, match="draft_layers"):
        speculative_view(tiny, "The quick brown fox", 2, 3)
    with pytest.raises(ValueError, match="tuned"):
        speculative_view(tiny, "The quick brown fox", 1, 3, "tuned")


def test_explorer_builds_and_reports_errors(tiny):
    box = speculative_explorer(tiny, "The quick brown fox", draft_layers=1, draft_tokens=2, max_new_tokens=4)
    layers, tokens, lens, out = box.children
    assert tokens.description == "draft_tokens" and tokens.max == 8
    assert layers.description == "draft_layers" and layers.max == tiny.n_layers - 1
    assert "tokens/s" in out.value
    lens.value = "tuned"  # no tuned lens ships for this model: the widget says so instead of failing
    assert "tuned" in out.value and "color" in out.value


def test_plots():
    fig = plot_acceptance_by_depth({"text": {"logit": {1: 0.2, 2: 0.5}, "tuned": {2: 0.6}}})
    assert fig.axes[0].get_xlabel().startswith("draft depth")
    fig = plot_predicted_speedup([{"setting": "L=1 K=1", "predicted": 0.8, "speedup": 0.7}])
    assert fig.axes[0].get_ylabel().startswith("measured")


def test_benchmark_table_shows_every_row(tmp_path):
    import json

    from anee_lite.notebook.self_speculative import benchmark_table, load_benchmark

    rows = [{"setting": "full depth", "tokens_per_s": 4.0, "speedup": 1.0},
            {"setting": "L=27 K=1 tuned", "tokens_per_s": 3.0, "speedup": 0.75, "acceptance": 0.6,
             "tokens_per_verify": 1.6, "c": 0.95, "v": 0.4, "predicted": 1.19}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"new_tokens": 32, "repeats": 3, "threads": 1, "texts": {"kjv": {"rows": rows}}}))
    table = benchmark_table(load_benchmark(path))
    assert "L=27 K=1 tuned" in table and "0.75x" in table and "1.19x" in table and "kjv" in table
