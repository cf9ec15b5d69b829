"""The packages keep the boundaries docs/design.md draws: each imports only the packages of ours it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from project_files import REPO, project_files

OURS = ("hw3", "hw3tools", "hw3build", "hw3sweep", "hw3grade")
# What each package may import of ours (third-party libraries are not restricted here).
ALLOWED = {
    "hw3": {"hw3"},  # pasted into the notebook: nothing else of ours exists there
    "hw3tools": {"hw3", "hw3tools"},
    "hw3build": {"hw3", "hw3tools", "hw3build"},
    "hw3sweep": {"hw3", "hw3tools", "hw3sweep"},
    "hw3grade": {"hw3", "hw3tools", "hw3build", "hw3grade"},  # the course's side reuses the build's rules
}


def imported_packages(source: str) -> set[str]:
    """The top-level names of ours that ``source`` imports, anywhere (a function's lazy import included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(OURS)
    return found


def forbidden_imports(package: str, source: str) -> set[str]:
    return imported_packages(source) - ALLOWED[package]


def package_sources() -> dict[Path, str]:
    return {path: path.parts[len(REPO.parts) + 1] for path in project_files(".py", "code")}


def test_every_package_of_ours_has_its_rule() -> None:
    assert {package for package in package_sources().values()} == set(ALLOWED)


def test_no_package_imports_what_it_may_not() -> None:
    broken = {
        str(path.relative_to(REPO)): sorted(bad)
        for path, package in package_sources().items()
        if (bad := forbidden_imports(package, path.read_text(encoding="utf-8")))
    }
    assert broken == {}


@pytest.mark.parametrize(
    ("package", "source", "bad"),
    [
        ("hw3", "from hw3tools.train import main", {"hw3tools"}),
        ("hw3", "def f():\n    import hw3build.notebook.render\n", {"hw3build"}),
        ("hw3sweep", "from hw3build.locks import exclusive_lock", {"hw3build"}),
        ("hw3tools", "import hw3sweep.cli as cli", {"hw3sweep"}),
        ("hw3build", "from hw3tools.locks import build_lock\nfrom hw3 import train", set()),
        ("hw3", "from . import data\nimport hw3build_extra", set()),
    ],
)
def test_the_check_sees_a_forbidden_import(package: str, source: str, bad: set[str]) -> None:
    assert forbidden_imports(package, source) == bad
