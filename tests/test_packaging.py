"""environment.yml (conda) must install what pyproject.toml declares."""

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment():
    """Return (conda dependencies, pip entries) of environment.yml.

    A small parser for the one shape the file uses (a `dependencies:` list with one nested
    `pip:` list) keeps PyYAML out of the requirements.
    """
    conda, pip, section = [], [], None
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split(" #")[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0:
            section = "dependencies" if item == "dependencies:" else None
        elif section == "dependencies" and item == "- pip:":
            section = "pip"
        elif section == "pip" and indent <= 2:
            section = "dependencies"
        if item.startswith("- ") and item != "- pip:":
            value = item[2:].strip()
            (pip if section == "pip" else conda if section == "dependencies" else []).append(value)
    return conda, pip


def _name(requirement):
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_has_the_expected_shape():
    conda, pip = _environment()
    assert any(_name(dep) == "python" for dep in conda)
    assert "pip" in conda
    assert any(entry.startswith("-e") for entry in pip)


def test_environment_extras_exist_in_pyproject():
    extras = set(_pyproject()["project"]["optional-dependencies"])
    _, pip = _environment()
    editable = [entry for entry in pip if entry.startswith("-e")]
    assert editable, "environment.yml must install the package itself with pip -e"
    for entry in editable:
        match = re.search(r"\.\[([^\]]*)\]", entry)
        named = {extra.strip() for extra in match.group(1).split(",")} if match else set()
        assert named <= extras, f"extras {named - extras} of environment.yml not in pyproject"


def test_environment_python_satisfies_requires_python():
    conda, _ = _environment()
    (python,) = [dep for dep in conda if _name(dep) == "python"]
    version = tuple(int(part) for part in re.findall(r"\d+", python)[:2])
    minimum = _pyproject()["project"]["requires-python"]
    assert minimum.startswith(">="), "this test understands only '>=X.Y'"
    assert version >= tuple(int(part) for part in minimum[2:].split(".")[:2])


def test_plain_environment_packages_are_declared_in_pyproject():
    project = _pyproject()["project"]
    declared = {_name(dep) for dep in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(dep) for dep in extra}
    conda, pip = _environment()
    plain = [dep for dep in conda if _name(dep) not in {"python", "pip"}]
    plain += [entry for entry in pip if not entry.startswith("-")]
    undeclared = {_name(dep) for dep in plain} - declared
    assert not undeclared, f"environment.yml installs {undeclared}, unknown to pyproject.toml"



def test_the_seeds_module_paths_still_import():
    """ANEE v0.0.1's users wrote these imports; they name the same objects as the package's top level."""
    import anee_lite
    from anee_lite.config import ANEEConfig
    from anee_lite.wrapper import ANEEWrapper

    assert ANEEConfig is anee_lite.ANEEConfig and ANEEWrapper is anee_lite.ANEEWrapper
    assert ANEEConfig(energy_budget=0.5).energy_budget == 0.5
