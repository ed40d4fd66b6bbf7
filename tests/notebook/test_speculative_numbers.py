"""The README's self-speculative tables are the shipped benchmark's rows."""

from pathlib import Path

from anee_lite.notebook.self_speculative import load_benchmark, markdown_tables


def test_markdown_tables_format_each_row():
    bench = {"texts": {"kjv_heldout": {"rows": [
        {"setting": "full depth", "tokens_per_s": 20.0, "speedup": 1.0},
        {"setting": "L=3 K=2 logit", "tokens_per_s": 10.004, "speedup": 0.5002, "acceptance": 0.25,
         "tokens_per_verify": 1.3125, "c": 1.1, "v": 0.75, "predicted": 0.456}]}}}
    lines = markdown_tables(bench).splitlines()
    assert lines[0].startswith("| out of domain (kjv_heldout) | tokens/s |")
    assert lines[2] == "| full depth | 20.00 | 1.00x | - | 1 | - | 1 | 1.00x |"
    assert lines[3] == "| L=3 K=2 logit | 10.00 | 0.50x | 0.25 | 1.31 | 1.10 | 0.75 | 0.46x |"


def test_shipped_speculative_benchmark_matches_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_tables(load_benchmark()) in readme  # regenerate the README's tables after a new run
