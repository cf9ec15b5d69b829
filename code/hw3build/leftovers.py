"""What a killed build leaves in ``build/``, and how the next build clears it.

Every write in the build goes to a temporary name and is renamed into place, so a ``kill -9`` leaves
old files whole and new ones unfinished under temporary names: these patterns. The next build removes
them holding the build lock, so none of them can belong to a live build. (``build/run`` has its own
rules, :func:`hw3build.notebook.runs.recover`: a finished run there is recovered, not removed.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Relative to the build folder.
PATTERNS = (
    ".*.tmp",  # hw3.files.write_atomic's temporary files (build.json)
    "notebook/.*.tmp",  # the rendered notebook's
    "dist/.staging/*",  # a zip being written or validated (the staging area belongs to one build)
    "dist/.*.tmp",
    "report/.tex-*",  # the report's TeX work folder
    "report/.*.tmp*",  # the report's PDF and .tex being moved into place
    "report/tex.old",  # the previous TeX folder, between its two renames
    "theory/**/*.tmp",  # the theory checks' temporary files
    "theory/**/*.tmp.*",
    "theory/**/.*.tmp",
)


def sweep(build_dir: str | Path) -> list[Path]:
    """Remove every leftover of an interrupted build under ``build_dir``; returns what was removed."""
    build_dir = Path(build_dir)
    removed = []
    for pattern in PATTERNS:
        for path in sorted(build_dir.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
