"""Rebuild the shipped texts in anee_lite/data from Debian packages: training, calibration and held-out sets.

    apt-get download bible-kjv bible-kjv-text python3.11-doc
    for f in *.deb; do dpkg -x "$f" x; done
    python scripts/make_eval_texts.py x

King James Bible: public domain. Python documentation: PSF licence (see anee_lite/data/README.md).
The three roles come from disjoint pages and chapters (checked here), and a training paragraph that
also occurs in a calibration or held-out text is dropped, so training never reads what is measured.
"""

import re
import subprocess
import sys
from pathlib import Path

KJV_CALIBRATION = ["Ruth 1:1-22", "Ruth 2:1-23", "Ecclesiastes 1:1-18"]
KJV_HELDOUT = ["Luke 15:11-32", "Ecclesiastes 3:1-15", "Proverbs 3:1-20", "Ruth 3:1-18"]
PY_CALIBRATION = ["tutorial/appetite", "tutorial/interpreter", "howto/sorting", "tutorial/venv"]
PY_HELDOUT = ["tutorial/whatnow", "howto/ipaddress", "tutorial/floatingpoint"]
# Training text for the tuned lens and the exit probe: the rest of the tutorial and three FAQ pages (~40k tokens).
PY_TRAIN = ["tutorial/introduction", "tutorial/controlflow", "tutorial/datastructures", "tutorial/modules",
            "tutorial/inputoutput", "tutorial/errors", "tutorial/classes", "tutorial/stdlib", "tutorial/stdlib2",
            "tutorial/interactive", "tutorial/appendix", "faq/general", "faq/design", "faq/programming"]
KJV_TRAIN = ["Genesis 1:1-31", "Genesis 2:1-25", "Matthew 5:1-48", "Psalms 104:1-35"]
DATA = Path(__file__).resolve().parent.parent / "anee_lite" / "data"


def kjv(root: Path, specs: list[str]) -> str:
    """Verses as plain paragraphs, one chapter per paragraph, verse numbers dropped."""
    paragraphs = []
    for spec in specs:
        out = subprocess.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l5000", spec],
                             capture_output=True, text=True, check=True).stdout
        verses = [re.sub(r"^\s*\d+\s+", "", line).strip() for line in out.splitlines() if re.match(r"^\s+\d+ ", line)]
        paragraphs.append(" ".join(verses))
    return "\n\n".join(paragraphs) + "\n"


def rst_prose(root: Path, pages: list[str]) -> str:
    """Prose paragraphs of reStructuredText pages: code blocks, directives, tables and titles removed."""
    paragraphs = []
    for page in pages:
        text = (root / f"usr/share/doc/python3.11/html/_sources/{page}.rst.txt").read_text()
        for block in re.split(r"\n\s*\n", text):
            lines = block.splitlines()
            if not lines or lines[0].startswith((" ", "\t", "..", ">>>", "+", "=", "-", "*", "$")):
                continue  # indented code, directives, tables, bullet lists
            if len(lines) > 1 and set(lines[1].strip()) <= set("=-~*^#"):
                continue  # a section title
            prose = " ".join(line.strip() for line in lines)
            prose = re.sub(r":\w+:`~?([^`<]*?)(?: <[^>]*>)?`", r"\1", prose)  # :role:`text` -> text
            prose = re.sub(r"`([^`<]*?)(?: <[^>]*>)?`_*", r"\1", prose).replace("``", "").replace("::", ":")
            prose = prose.replace("**", "").replace("*", "")
            if len(prose.split()) >= 12:
                paragraphs.append(prose)
    return "\n\n".join(paragraphs) + "\n"


def chapters(specs: list[str]) -> set[str]:
    """'Ruth 1:1-22' -> 'Ruth 1': the unit two roles must not share."""
    return {spec.split(":")[0] for spec in specs}


def without(text: str, measured: list[str]) -> str:
    """``text``'s paragraphs minus any that also occur in a measured (calibration or held-out) text."""
    seen = {p.strip() for t in measured for p in t.split("\n\n")}
    return "\n\n".join(p for p in text.strip().split("\n\n") if p.strip() not in seen) + "\n"


def main(root: str) -> None:
    root_path = Path(root)
    for roles in ((PY_TRAIN, PY_CALIBRATION, PY_HELDOUT), tuple(map(chapters, (KJV_TRAIN, KJV_CALIBRATION, KJV_HELDOUT)))):
        pages = [p for role in roles for p in role]
        if len(pages) != len(set(pages)):
            raise SystemExit(f"a page or chapter is in two roles: {sorted(p for p in set(pages) if pages.count(p) > 1)}")
    files = {
        "python_docs_calibration.txt": rst_prose(root_path, PY_CALIBRATION),
        "python_docs_heldout.txt": rst_prose(root_path, PY_HELDOUT),
        "kjv_calibration.txt": kjv(root_path, KJV_CALIBRATION),
        "kjv_heldout.txt": kjv(root_path, KJV_HELDOUT),
    }
    measured = list(files.values())
    files["python_docs_train.txt"] = without(rst_prose(root_path, PY_TRAIN), measured)
    files["kjv_train.txt"] = without(kjv(root_path, KJV_TRAIN), measured)
    for name, text in files.items():
        (DATA / name).write_text(text)
        print(f"{name}: {len(text.split())} words")


if __name__ == "__main__":
    main(sys.argv[1])
