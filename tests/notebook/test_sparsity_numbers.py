"""README, notebook 06 and the shipped sparsity benchmark carry the same numbers."""

import json
from pathlib import Path

import pytest

from anee_lite.sparsity.evaluate import format_activation, format_table, load_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results():
    return load_results()


def stored_markdown(notebook: str) -> str:
    """Every Markdown and stream output stored in a notebook, joined."""
    nb = json.loads((REPO / "notebooks" / notebook).read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out["text"]))
            parts.append("".join(out.get("data", {}).get("text/markdown", "")))
    return "\n".join(parts)


def test_the_shipped_run_was_quiet_and_says_so(results):
    assert results["load_before"][0] <= 1.0 and len(results["load_after"]) == 3


def test_readme_tables_are_the_shipped_run(results):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert format_table(results) in readme
    assert format_activation(results) in readme


def test_notebook_06_shows_the_shipped_run(results):
    stored = stored_markdown("06_sparsity.ipynb")
    assert format_table(results) in stored
    assert format_activation(results) in stored
