"""The run folders under ``build/run``: how a run is trusted, put in place, kept on failure, recovered.

``<key>/``         a finished run: executed.ipynb, metrics.json, figures/, key_inputs.json and its
                   manifest (:mod:`hw3build.notebook.manifest`), written last; plus the shipped notebook, which
                   every build rewrites and the manifest does not list.
``.tmp-<key>-<pid>/``  a run being executed (the kernel's working directory).
``.old-<key>-<pid>/``  the previous run of the same key while a re-run (``--force``, or a damaged entry)
                   is being moved in: two renames, the old one away, then the new one in.
``failed-<key>/``  the last failed run of that key, kept for inspection.

Runs are only ever replaced by renames, so a build killed at any moment leaves each folder either whole
or unfinished; :func:`recover`, called under the build lock before anything else uses the folder, puts a
finished run that was caught between the two renames in place and removes the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from hw3.files import write_json_atomic

from hw3build.failpoints import failpoint
from hw3build.failures import describe_failure, find_failure
from hw3build.notebook.manifest import manifest_problem, write_manifest

EXECUTED_NAME = "executed.ipynb"
METRICS_NAME = "metrics.json"
KEY_INPUTS_NAME = "key_inputs.json"  # what went into the run's cache key
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
FAILED_PREFIX = "failed-"


def start(run_root: Path, key: str, inputs: Mapping[str, Any]) -> Path:
    """A fresh work folder for a run of ``key`` (``.tmp-<key>-<pid>``), holding ``key_inputs.json``."""
    work = run_root / f"{TMP_PREFIX}{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write_json_atomic(work / KEY_INPUTS_NAME, inputs)
    return work


def latest_inputs(run_root: Path) -> dict[str, Any] | None:
    """The ``key_inputs.json`` of the most recent finished run under ``run_root`` (None if none)."""
    previous = sorted(
        (
            p
            for p in Path(run_root).glob(f"*/{KEY_INPUTS_NAME}")
            if not p.parent.name.startswith((".", FAILED_PREFIX))
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not previous:
        return None
    try:
        return json.loads(previous[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_problem(folder: Path, require_metrics: bool = True, key: str | None = None) -> str | None:
    """Why ``folder`` is not a finished, intact, successful run (of ``key``, default: the folder's name),
    in one line, or None when it is one."""
    if not folder.is_symlink() and not folder.is_dir():
        return "no such run"
    required = (EXECUTED_NAME, METRICS_NAME) if require_metrics else (EXECUTED_NAME,)
    problem = manifest_problem(folder, key if key is not None else folder.name, required)
    if problem is not None:
        return problem
    try:
        failure = find_failure(nbformat.read(folder / EXECUTED_NAME, as_version=4))
    except Exception as exc:  # nbformat raises several types for a bad file
        return f"{EXECUTED_NAME} is unreadable ({type(exc).__name__})"
    return None if failure is None else describe_failure(failure)


def publish(work: Path, final: Path) -> None:
    """Seal the finished run ``work`` with its manifest (written last: its presence says the run is
    complete) and move it to ``final``; an older run there is removed only afterwards."""
    write_manifest(work, final.name)  # the run's key: its folder's name
    old = final.with_name(f"{OLD_PREFIX}{final.name}-{os.getpid()}")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    try:
        failpoint("execute:publish")
        os.replace(work, final)
    except BaseException:  # the new run is not in place: the old one goes back
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    remove(old)


def remove(path: Path) -> None:
    """Remove a run folder, or a symbolic link in its place (never what the link points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def move_to_failed(work: Path, key: str) -> Path:
    """Keep a failed run's folder (its partial notebook) as ``failed-<key>``, replacing an older failure."""
    failed = work.parent / f"{FAILED_PREFIX}{key}"
    remove(failed)
    os.replace(work, failed)
    return failed


def _key_of(name: str, prefix: str) -> str:
    """``.tmp-<key>-<pid>`` -> ``<key>`` (keys are hex digits, so the last '-' ends the key)."""
    return name[len(prefix) :].rsplit("-", 1)[0]


def recover(run_root: Path) -> list[str]:
    """Clean up after builds that were killed (call it holding the build lock); returns what it did.

    A finished run caught between its two renames is put in place (it is never thrown away); unfinished
    runs and leftover temporary files are removed. The newer run (``.tmp-``) wins over the older (``.old-``).
    """
    notes: list[str] = []
    if not run_root.is_dir():
        return notes
    for prefix in (TMP_PREFIX, OLD_PREFIX):
        for folder in sorted(run_root.glob(f"{prefix}*")):
            key = _key_of(folder.name, prefix)
            final = run_root / key
            if not final.exists() and not final.is_symlink() and run_problem(folder, key=key) is None:
                os.replace(folder, final)
                notes.append(
                    f"recovered the finished run {final.name} (a build was stopped while moving it in)"
                )
            else:
                remove(folder)
                notes.append(f"removed {folder.name} (left by a build that was stopped)")
            failpoint("recover")
    for leftover in sorted(run_root.glob("*/.*.tmp")):  # an interrupted atomic write inside a run folder
        leftover.unlink()
        notes.append(f"removed {leftover.relative_to(run_root)} (an interrupted write)")
    return notes
