"""The project's own files, as git lists them (tracked, plus new files git does not ignore): a test that reads
the sources never walks a virtual environment, a build folder or a cache inside the clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def project_files(suffix: str = ".py", under: str = ".") -> list[Path]:
    """Every file of the project under ``under`` (relative to the root) whose name ends with ``suffix``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", under],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths = sorted({REPO / name for name in listed.split("\0") if name.endswith(suffix)})
    return [path for path in paths if path.is_file()]  # a deleted, not yet committed file is listed too
