"""The build lock: one holder at a time across processes, released on exit or crash."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from hw3build.build import clean
from hw3tools.locks import BUILD_LOCK_NAME, LockBusy, build_lock, build_lock_for, exclusive_lock
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
    assert [p.name for p in build_dir.iterdir()] == [BUILD_LOCK_NAME]
    assert clean(build_dir) is False


def test_clean_keeps_the_lock_file_a_waiting_build_holds(tmp_path: Path) -> None:
    # A build waiting for the lock has the lock file open. If clean unlinked it, that build would lock the
    # deleted file while the next build created and locked a new one: two builds at once.
    build_dir = tmp_path / "build"
    with build_lock(build_dir, timeout=0):
        (build_dir / "run").mkdir()
    waiting = open(build_dir / BUILD_LOCK_NAME, "a")  # noqa: SIM115 - held across clean() on purpose
    try:
        clean(build_dir)
        fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the waiting build gets the lock ...
        with pytest.raises(LockBusy):
            with build_lock(build_dir, timeout=0):  # ... and a new build must then be refused
                pytest.fail("two builds hold the build lock at once")
    finally:
        waiting.close()


def test_a_report_run_by_hand_takes_the_build_lock(tmp_path: Path, monkeypatch, capsys) -> None:
    from hw3build.report import report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "build").mkdir()
    with lock_held_elsewhere(tmp_path / "build"):
        with pytest.raises(LockBusy):
            with build_lock_for("build/report/report.pdf", build_dir="build", timeout=0):
                pass
        monkeypatch.setattr(report, "build_report", lambda *a, **k: pytest.fail("wrote while locked"))
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "metrics.json").write_text("{}")
        repo = Path(__file__).resolve().parents[1]
        code = report.main(["run", "--config", str(repo / "submission.toml"), "--build-dir", "build"])
    assert code == 1 and "held by another process" in capsys.readouterr().err
    with build_lock_for(tmp_path / "elsewhere" / "report.pdf", timeout=0) as held:
        assert held is None  # outside build/: nothing to lock


def test_invoke_theory_takes_the_build_lock(monkeypatch, capsys) -> None:
    from hw3build.report import theory as stage
    from invoke import Exit, MockContext

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import tasks

    ran: list[list[str]] = []
    monkeypatch.setattr(stage, "main", lambda argv: ran.append(argv) or 0)
    out = str(tasks.BUILD_DIR / "theory")
    with lock_held_elsewhere(tasks.BUILD_DIR) as holder:
        with pytest.raises(Exit) as refused:
            tasks.theory(MockContext(), out=out)
    assert refused.value.code == 1 and f"pid {holder.pid}" in capsys.readouterr().err and ran == []
    tasks.theory(MockContext(), out=out)  # free again: it runs
    assert ran == [["--out", out]]
