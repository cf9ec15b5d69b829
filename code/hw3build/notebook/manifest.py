"""The manifest of a finished run folder: its cache key, and the sha256 and size of each of its files,
written last.

A run folder is trusted only through its manifest. The manifest is written after every other file of the
run (``hw3.files.write_json_atomic``: temporary file, fsync, rename), so its presence says the run finished;
its key says which inputs the run is for (a folder renamed or copied under another key is not that run);
its hashes say that no file was truncated, edited or half-written since. Files the manifest does not list
are not part of the run (the build writes the shipped notebook beside them) and are never read as such.
Only plain files inside the folder are hashed: an entry that is absolute, climbs out with ``..``, or is
(or passes through) a symbolic link makes the folder untrusted, so a crafted manifest can never make the
build read or write outside the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from hw3.download import sha256_file
from hw3.files import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 2


def write_manifest(folder: str | Path, key: str, exclude: frozenset[str] = frozenset()) -> Path:
    """List every file under ``folder`` (but the manifest and the ``exclude`` names) with its sha256."""
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST_NAME or name in exclude:
            continue
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"schema": MANIFEST_SCHEMA, "key": key, "files": files}
    return write_json_atomic(folder / MANIFEST_NAME, manifest)


def manifest_problem(folder: str | Path, key: str | None = None, required: Iterable[str] = ()) -> str | None:
    """Why ``folder`` cannot be trusted (one line), or None when it is the run of ``key`` (when given),
    lists the ``required`` files and every listed file is intact."""
    folder = Path(folder)
    if folder.is_symlink():
        return "the run folder is a symbolic link (never followed)"
    path = folder / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        return f"no {MANIFEST_NAME} (the run never finished, or predates manifests)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{MANIFEST_NAME} is unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
    shape = _shape_problem(manifest)
    if shape is not None:
        return f"{MANIFEST_NAME} {shape}"
    if key is not None and manifest["key"] != key:
        return f"{MANIFEST_NAME} is for the run {manifest['key']!r}, not {key!r}"
    files: dict[str, dict[str, Any]] = manifest["files"]
    unlisted = [name for name in required if name not in files]
    if unlisted:
        return f"{MANIFEST_NAME} does not list {', '.join(unlisted)}"
    for name, expected in sorted(files.items()):
        unsafe = _unsafe_entry(folder, name)
        if unsafe is not None:
            return f"{MANIFEST_NAME} lists {name!r}, {unsafe}"
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size} bytes, the manifest says {expected['bytes']} (truncated or edited)"
        if sha256_file(file) != expected["sha256"]:
            return f"{name} differs from its sha256 in the manifest (edited or corrupted)"
    return None


def _shape_problem(manifest: Any) -> str | None:
    """What is wrong with the manifest's JSON shape (None: a dict with schema, key and file entries)."""
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        return f"is not a schema-{MANIFEST_SCHEMA} manifest (an older build's, or edited)"
    files = manifest.get("files")
    if not isinstance(manifest.get("key"), str) or not isinstance(files, dict) or not files:
        return "has no key or no files"
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int)
        ):
            return f"has a malformed entry for {name!r}"
    return None


def _unsafe_entry(folder: Path, name: str) -> str | None:
    """Why the entry ``name`` would reach outside ``folder`` (None: a plain relative path inside it)."""
    parts = name.split("/")
    if "\\" in name or PurePosixPath(name).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return "a path that is not inside the run folder"
    probe = folder
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            return "a symbolic link (never followed)"
    return None


def listed_files(folder: str | Path) -> list[str]:
    """The names the manifest lists (empty when there is no readable manifest)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
        return sorted(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
