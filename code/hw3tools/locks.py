"""Cross-process locks (portalocker) so two builds, or a build and ``invoke clean``, never write the same
files at once.

A lock is an OS-level advisory lock on a small file (``build/.lock`` for the build folder). The OS releases
it when the holder exits, even if it crashes, so a stale lock file never blocks anyone. The holder writes
its pid, host and start time into the file, so a refused caller can say who holds it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import portalocker

from hw3tools.repo import BUILD_DIR

BUILD_LOCK_NAME = ".lock"
DEFAULT_TIMEOUT_S = 10.0


class LockBusy(RuntimeError):
    """Another process holds the lock and did not release it within the timeout."""

    def __init__(self, path: Path, holder: str, timeout: float, purpose: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"{purpose}: {path} is held by another process ({holder or 'holder unknown'}); "
            f"waited {timeout:g} s. Wait for it to finish, or stop it, then retry."
        )


def describe_holder(path: Path) -> str:
    """What the current holder wrote into the lock file ("" when unreadable or empty)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@contextmanager
def exclusive_lock(
    path: str | Path, timeout: float = DEFAULT_TIMEOUT_S, purpose: str = "lock"
) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Waits up to ``timeout`` seconds (0 = fail at once) and raises :class:`LockBusy` naming the holder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Append mode: opening must not truncate what the current holder wrote before we own the lock.
    lock = portalocker.Lock(
        str(path),
        mode="a",
        timeout=max(timeout, 0.0),
        check_interval=min(0.25, max(timeout, 0.01)),
        fail_when_locked=False,
        flags=portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING,
    )
    try:
        handle = lock.acquire()
    except portalocker.exceptions.LockException:
        raise LockBusy(path, describe_holder(path), timeout, purpose) from None
    try:
        handle.seek(0)
        handle.truncate()
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, {purpose} since {started}\n")
        handle.flush()
        yield path
    finally:
        try:
            handle.seek(0)
            handle.truncate()  # an unlocked file says nothing about a holder
            handle.flush()
        except OSError:
            pass
        lock.release()


@contextmanager
def build_lock(build_dir: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[Path]:
    """The lock over everything under ``build_dir`` (``build_dir/.lock``), held for a whole build."""
    with exclusive_lock(Path(build_dir) / BUILD_LOCK_NAME, timeout=timeout, purpose="build") as path:
        yield path


@contextmanager
def build_lock_for(
    *paths: str | Path, build_dir: str | Path = BUILD_DIR, timeout: float = DEFAULT_TIMEOUT_S
) -> Iterator[Path | None]:
    """Hold the build lock of ``build_dir`` while writing ``paths`` when any of them lies inside it (a tool
    run by hand, e.g. ``python -m hw3build.report.report``, must not write into a folder a build is using)."""
    root = Path(build_dir).resolve()
    if any(Path(path).resolve().is_relative_to(root) for path in paths):
        with build_lock(root, timeout=timeout) as lock_path:
            yield lock_path
    else:
        yield None
