"""What every notebook of the course holds: a Colab badge, a Next link or the end, exercises with hidden solutions."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_are_hidden_and_have_no_stored_output(path):
    """A stored output would give the answer away; the two metadata keys hide the code in JupyterLab and Colab."""
    cells = json.loads(path.read_text())["cells"]
    solutions = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("# @title Solution")]
    assert len(solutions) >= 2, "at least two exercises per notebook"
    for cell in solutions:
        assert cell["outputs"] == [], "".join(cell["source"])[:60]
        assert cell["metadata"].get("cellView") == "form"
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_frozen_progress_bar_is_stored(path):
    """A tqdm bar saved mid-run reads '0%' forever; a learner would wait for it. Bars show live, never stored."""
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), "".join(cell["source"])[:60]
            text = "".join(out.get("text", []))
            assert "%|" not in text and "it/s]" not in text, "".join(cell["source"])[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_is_checked_before_its_solution(path):
    """Each solution follows a learner's cell that calls the same check, so the learner runs it first."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        text = "".join(cell["source"])
        if text.startswith("# @title Solution"):
            checks = {w.split("(")[0] for w in text.split() if w.startswith("check_")}
            before = "".join(cells[i - 1]["source"])
            assert checks and all(c in before for c in checks), text[:80]


def _course_rows(text: str) -> list[tuple[str, str, str]]:
    """(number, title, time) of each row of the course table in ``text`` (any of the layouts used)."""
    import re

    rows = []
    for line in text.splitlines():
        m = re.match(r"\|\s*(?:▶)?\s*\|\s*\**\[?(\d\d) · ([^\]*]+?)\]?\**(?:\(.*?\))?\s*(?:\(you are here\))?\s*\|"
                     r"\s*(about \d+ min)\s*\|$", line)
        if m:
            rows.append(m.groups())
            continue
        m = re.match(r"\| (\d\d) \| \[`?([^\]`]+?)`?\]\(.*?\) \| .* \| (about \d+ min) \|$", line)
        if m:
            rows.append(m.groups())
    return rows


def test_every_course_table_gives_the_same_titles_and_times():
    """The notebooks' course tables, the glossary's and the README's: one set of titles and times."""
    root = Path(__file__).parents[2]
    glossary = _course_rows((root / "notebooks" / "00_glossary.md").read_text())
    assert [n for n, _, _ in glossary] == [p.name[:2] for p in NOTEBOOKS]
    readme = _course_rows((root / "README.md").read_text())
    assert [(n, t) for n, _, t in readme] == [(n, t) for n, _, t in glossary]
    for path in NOTEBOOKS:
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert _course_rows(first) == glossary, path.name
        here = [line for line in first.splitlines() if "(you are here)" in line]
        assert len(here) == 1 and f"**{path.name[:2]} · " in here[0], path.name


def test_every_glossary_link_lands_on_its_entry():
    """A link to a glossary term names the entry's anchor, and the anchor exists (else it opens at the top)."""
    import re

    root = Path(__file__).parents[2]
    glossary = (root / "notebooks" / "00_glossary.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', glossary))
    entries = re.findall(r"^\*\*(.+?)\.\*\*", glossary, flags=re.MULTILINE)
    assert len(anchors) == len(entries), "every glossary entry has an anchor"
    for path in [*NOTEBOOKS, root / "README.md"]:
        text = path.read_text()
        for anchor in re.findall(r"00_glossary\.md#([a-z0-9-]+)", text):
            assert anchor in anchors, f"{path.name}: no glossary entry {anchor!r}"
        bare = [t for t in re.findall(r"\[([^\]\[]+)\]\((?:notebooks/)?00_glossary\.md\)", text) if t != "glossary"]
        assert not bare, f"{path.name}: glossary links without an anchor: {bare}"
