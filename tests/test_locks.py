"""The build lock: one holder at a time across processes, released on exit or crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hw3build.build import clean
from hw3build.locks import BUILD_LOCK_NAME, LockBusy, build_lock, exclusive_lock
from submission_fixtures import lock_held_elsewhere


def test_a_second_holder_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    with lock_held_elsewhere(tmp_path) as holder:
        with pytest.raises(LockBusy) as refused:
            with build_lock(tmp_path, timeout=0.2):
                pytest.fail("got a lock another process holds")
    message = str(refused.value)
    assert f"pid {holder.pid}" in message and "waited 0.2 s" in message and BUILD_LOCK_NAME in message


def test_the_lock_is_free_again_once_the_holder_is_done(tmp_path: Path) -> None:
    with lock_held_elsewhere(tmp_path):
        pass
    with build_lock(tmp_path, timeout=0) as path:
        assert "pid" in path.read_text()
    assert path.read_text() == ""  # released: no holder described


def test_a_killed_holder_does_not_leave_a_stale_lock(tmp_path: Path) -> None:
    with lock_held_elsewhere(tmp_path) as holder:
        holder.kill()
        holder.wait(timeout=60)
        with build_lock(tmp_path, timeout=0):
            pass


def test_the_same_process_cannot_take_the_lock_twice(tmp_path: Path) -> None:
    with exclusive_lock(tmp_path / "x.lock", timeout=0, purpose="first"):
        with pytest.raises(LockBusy, match="second"):
            with exclusive_lock(tmp_path / "x.lock", timeout=0, purpose="second"):
                pass


def test_clean_refuses_while_a_build_holds_the_lock(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    (build_dir / "dist").mkdir(parents=True)
    (build_dir / "dist" / "a.zip").write_bytes(b"zip")
    with lock_held_elsewhere(build_dir):
        with pytest.raises(LockBusy):
            clean(build_dir)
        assert (build_dir / "dist" / "a.zip").read_bytes() == b"zip"
    assert clean(build_dir) is True
    assert not build_dir.exists()
    assert clean(build_dir) is False
