"""A real build killed with SIGKILL in each stage (and at the worst points inside some), then rebuilt.

For each: the previous zip is byte-identical, a plain rebuild succeeds, the finished training run is
reused (not retrained), and nothing is left behind. Plus two builds at once, a damaged cache entry, a
tampered data file, and two builds of the same inputs giving the same bytes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from builds import Project, assert_nothing_left_behind, kill, processes_in
from hw3build.report.theory import theory_inputs_key
from hw3build.submission.validate import validate_zip

THEORY_REUSED = "reused: the checks' inputs are unchanged"  # hw3build.build's note for the theory stage


def run_keys(project: Project) -> list[str]:
    return sorted(p.name for p in (project.build_dir / "run").iterdir() if not p.name.startswith("failed-"))


def killed_then_rebuilt(
    project: Project,
    failpoint: str | None,
    *extra: str,
    wait_for: Callable[[], bool] | None = None,
    before_kill: Callable[[], None] | None = None,
) -> str:
    """Start a build, kill its process group at ``failpoint`` (or once ``wait_for`` holds), rebuild."""
    previous_zip = project.zip.read_bytes()
    keys = run_keys(project)
    proc = project.start(*extra, failpoint=failpoint)
    if wait_for is None:
        project.wait_paused(proc)
    else:
        project.wait_until(proc, wait_for)
    if before_kill is not None:
        before_kill()
    kill(proc)
    assert project.zip.read_bytes() == previous_zip, "the kill changed the previous zip"

    code, output = project.build()
    assert code == 0, output[-5000:]
    assert "reused from cache" in output, "the finished training run was not reused"
    assert run_keys(project) == keys
    assert json.loads((project.build_dir / "build.json").read_text())["build"]["cache_hit"] is True
    assert validate_zip(project.zip).ok
    assert_nothing_left_behind(project)
    return output


@pytest.mark.reliability("kill-render")
def test_killed_at_render(project: Project) -> None:
    killed_then_rebuilt(project, "render")


@pytest.mark.reliability("kill-execute")
def test_killed_at_execute(project: Project) -> None:
    killed_then_rebuilt(project, "execute")


@pytest.mark.reliability("kill-kernel-running")
def test_killed_while_the_kernel_runs(project: Project) -> None:
    def kernel_alive() -> None:
        work = next((project.build_dir / "run").glob(".tmp-*"))
        assert processes_in(work.resolve()), "no kernel was running in the work folder"

    killed_then_rebuilt(project, "execute:kernel-running", "--force", before_kill=kernel_alive)


@pytest.mark.reliability("kill-between-renames")
def test_killed_between_the_two_renames_of_a_finished_run(project: Project) -> None:
    def caught_between() -> None:
        run_root = project.build_dir / "run"
        assert list(run_root.glob(".old-*")) and list(run_root.glob(".tmp-*"))
        assert not [p for p in run_root.iterdir() if not p.name.startswith((".", "failed-"))]

    output = killed_then_rebuilt(project, "execute:publish", "--force", before_kill=caught_between)
    assert "recovered the finished run" in output


@pytest.mark.reliability("kill-theory")
def test_killed_at_theory(project: Project) -> None:
    killed_then_rebuilt(project, "theory")


@pytest.mark.reliability("kill-theory-running")
def test_killed_while_the_theory_checks_run(project: Project) -> None:
    (project.build_dir / "theory" / ".inputs-sha256").write_text("stale\n")  # as after editing hw3

    def checks_running() -> bool:
        return any("hw3build.report.theory" in _cmdline(pid) for pid in _pids())

    output = killed_then_rebuilt(project, None, wait_for=checks_running)
    assert THEORY_REUSED not in output  # the checks ran again, to the end
    key = (project.build_dir / "theory" / ".inputs-sha256").read_text().strip()
    assert key == theory_inputs_key()
    code, again = project.build(log="again.log")
    assert code == 0 and THEORY_REUSED in again  # the string is the one the build prints


@pytest.mark.reliability("kill-report")
def test_killed_at_report(project: Project) -> None:
    killed_then_rebuilt(project, "report")


@pytest.mark.reliability("kill-latexmk")
def test_killed_as_latexmk_starts(project: Project) -> None:
    def tex_folder_written() -> None:
        assert list((project.build_dir / "report").glob(".tex-*/report.tex"))

    killed_then_rebuilt(project, "latexmk", before_kill=tex_folder_written)


@pytest.mark.reliability("kill-zip")
def test_killed_at_zip(project: Project) -> None:
    killed_then_rebuilt(project, "zip")


@pytest.mark.reliability("kill-zip-staged")
def test_killed_with_the_new_zip_staged(project: Project) -> None:
    def staged() -> None:
        assert list((project.build_dir / "dist" / ".staging").glob("*.zip"))

    killed_then_rebuilt(project, "zip:staged", before_kill=staged)


@pytest.mark.reliability("two-builds")
def test_two_builds_at_once_never_both_write(project: Project) -> None:
    holder = project.start(failpoint="render", log="holder.log")  # holds the lock, paused
    project.wait_paused(holder)
    code, refused = project.build(log="refused.log")  # --lock-timeout 0: refused at once
    assert code == 1 and "stage 'lock'" in refused and f"pid {holder.pid}" in refused
    snapshot = _listing(project.build_dir)
    waiting = project.start("--lock-timeout", "900", log="waiting.log")
    time.sleep(5)
    assert waiting.poll() is None and _listing(project.build_dir) == snapshot  # waits without writing
    kill(holder)
    assert waiting.wait(timeout=900) == 0, (project.logs / "waiting.log").read_text()[-3000:]
    assert "reused from cache" in (project.logs / "waiting.log").read_text()
    assert validate_zip(project.zip).ok
    assert_nothing_left_behind(project)


@pytest.mark.reliability("corrupt-cache")
def test_a_truncated_cache_entry_is_run_again(project: Project) -> None:
    (key,) = run_keys(project)
    metrics = project.build_dir / "run" / key / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[:100])
    code, output = project.build()
    assert code == 0, output[-5000:]
    damaged = [line for line in output.splitlines() if "damaged" in line]
    assert len(damaged) == 1 and "metrics.json" in damaged[0], output[-3000:]
    assert "ran now" in output and run_keys(project) == [key]
    assert json.loads(metrics.read_text())["test_ppl"] > 1
    assert_nothing_left_behind(project)


@pytest.mark.reliability("tampered-data")
def test_a_tampered_data_file_stops_the_build_before_training(project: Project, tmp_path: Path) -> None:
    data = tmp_path / "wikitext-2"
    shutil.copytree(project.data_dir, data)
    valid = data / "wiki.valid.tokens"
    content = bytearray(valid.read_bytes())
    content[1000] ^= 0x01
    valid.write_bytes(bytes(content))
    previous_zip, keys = project.zip.read_bytes(), run_keys(project)
    tampered = Project(project.config, project.build_dir, data, project.logs)
    code, output = tampered.build()
    assert code == 1 and "stage 'execute'" in output
    assert "wiki.valid.tokens" in output and "sha256" in output
    assert "Executing" not in output  # papermill never started: no training
    assert project.zip.read_bytes() == previous_zip and run_keys(project) == keys
    assert not list((project.build_dir / "run").glob("failed-*"))
    assert_nothing_left_behind(project)


@pytest.mark.reliability("same-bytes")
def test_two_builds_of_the_same_inputs_give_the_same_bytes(primed: Project, project: Project) -> None:
    first = primed.zip.read_bytes()  # the build that trained
    for log in ("again.log", "once-more.log"):
        code, output = project.build(log=log)
        assert code == 0 and "reused from cache" in output, output[-3000:]
        assert project.zip.read_bytes() == first, "a rebuild of the same inputs changed the zip"


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.name != ".lock"
    )


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").glob("[0-9]*")]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
