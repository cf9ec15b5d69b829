"""Two clones, one environment: invoke started in clone B, with the packages imported from clone A, refuses
(naming both paths) instead of building A with A's templates and theory into A's build/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hw3tools.repo import ROOT, CheckoutMismatch, require_checkout

REPO = Path(__file__).resolve().parents[1]


def test_the_packages_root_is_this_checkout() -> None:
    assert ROOT == REPO and require_checkout(REPO) == REPO
    with pytest.raises(CheckoutMismatch, match=str(REPO)):
        require_checkout(REPO / "tests")


@pytest.mark.parametrize("task", ["build", "clean", "validate", "theory", "sweep", "test"])
def test_invoke_in_another_clone_refuses_naming_both(tmp_path: Path, task: str) -> None:
    clone_b = tmp_path / "clone-b"
    clone_b.mkdir()
    for name in ("tasks.py", "submission.toml"):
        shutil.copy(REPO / name, clone_b / name)
    env = {**os.environ, "PYTHONPATH": str(REPO / "code")}  # the packages of clone A, as an editable install
    done = subprocess.run(
        [sys.executable, "-m", "invoke", task],
        cwd=clone_b,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(clone_b) in done.stderr and str(REPO) in done.stderr
    assert sorted(p.name for p in clone_b.iterdir()) == ["submission.toml", "tasks.py"]  # nothing written
