"""The manifest of a finished run folder: the sha256 and size of each of its files, written last.

A run folder is trusted only through its manifest. The manifest is written after every other file of the
run (``hw3.files.write_json_atomic``: temporary file, fsync, rename), so its presence says the run finished;
its hashes say that no file was truncated, edited or half-written since. Files the manifest does not list
are not part of the run (the build writes the shipped notebook beside them) and are never read as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hw3.download import sha256_file
from hw3.files import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1


def write_manifest(folder: str | Path, exclude: frozenset[str] = frozenset()) -> Path:
    """List every file under ``folder`` (but the manifest and the ``exclude`` names) with its sha256."""
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST_NAME or name in exclude:
            continue
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return write_json_atomic(folder / MANIFEST_NAME, {"schema": MANIFEST_SCHEMA, "files": files})


def manifest_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be trusted (one line), or None when every listed file is intact."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return f"no {MANIFEST_NAME} (the run never finished, or predates manifests)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("schema") != MANIFEST_SCHEMA or not isinstance(files, dict) or not files:
            raise ValueError("unknown schema or no files")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST_NAME} is unreadable ({type(exc).__name__}: {exc})"
    for name, expected in sorted(files.items()):
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected.get("bytes"):
            return f"{name} has {size} bytes, the manifest says {expected.get('bytes')} (truncated or edited)"
        if sha256_file(file) != expected.get("sha256"):
            return f"{name} differs from its sha256 in the manifest (edited or corrupted)"
    return None
