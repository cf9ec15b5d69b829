"""The repository: its root (found here and nowhere else), its fixed folders, and its git state.

The root is the checkout these packages are imported from. A command started in another checkout (two
clones sharing one virtual environment, the package installed editable from the other) would read that
other checkout's templates and theory and write its ``build/``: :func:`require_checkout` refuses it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build"
TEMPLATES_DIR = ROOT / "templates"
THEORY_DIR = ROOT / "theory"
HW3_THEORY_DIR = ROOT / "code" / "hw3" / "theory"


class CheckoutMismatch(RuntimeError):
    """The command was started in one checkout while the packages are imported from another."""


def require_checkout(started_in: str | Path) -> Path:
    """The repository root when ``started_in`` is it; else :class:`CheckoutMismatch` naming both."""
    started = Path(started_in).resolve()
    if started != ROOT:
        raise CheckoutMismatch(
            f"this command was started in {started}, but the hw3 packages are imported from {ROOT}: "
            f"the build would read that checkout's templates and theory and write its build/. Install "
            f"the packages from this checkout (pip install -e {started}) or run from {ROOT}."
        )
    return ROOT


def git_state(repo_dir: str | Path = ROOT) -> dict[str, Any]:
    """The commit and whether the working tree had uncommitted changes (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}
