"""Real builds for the fault-injection suite: a project outside the repository, a build started in its own
process group (so a SIGKILL of the group reaches everything it started), and the checks after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hw3tools.locks import build_lock

REPO = Path(__file__).resolve().parents[2]
# A training run of seconds: the suite tests the build around it, not the model.
TINY_HPARAMS = (
    "epochs = 1\nmax_train_batches = 3\nmax_eval_batches = 2\nwarmup_batches = 1\nlog_interval = 1\n"
)
ID1, ID2 = "123456782", "012345674"
BUILD_TIMEOUT_S = 900


def write_config(folder: Path, names: tuple[str, str] = ("Dana Levi", "Noam Cohen")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "submission.toml"
    students = "".join(
        f'[[students]]\nname = "{name}"\nemail = "s{i}@campus.technion.ac.il"\nid = "{id_}"\n'
        for i, (name, id_) in enumerate(zip(names, (ID1, ID2), strict=True))
    )
    path.write_text(f'profile = "quick"\n{students}[hparams]\n{TINY_HPARAMS}', encoding="utf-8")
    return path


@dataclass
class Project:
    """A config and a build folder outside the repository, built by ``python -m hw3build build``."""

    config: Path
    build_dir: Path
    data_dir: Path
    logs: Path

    @property
    def zip(self) -> Path:
        return self.build_dir / "dist" / f"ece046211_hw3_{ID1}_{ID2}.zip"

    def env(self, failpoint: str | None = None, action: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HW3_FAILPOINT", "SOURCE_DATE"))}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "code"), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env["HW3_OFFLINE"] = "1"
        if failpoint is not None:
            env["HW3_FAILPOINT"] = failpoint
            env["HW3_FAILPOINT_FILE"] = str(self.logs / "paused.pid")
        if action is not None:
            env["HW3_FAILPOINT_ACTION"] = action
        return env

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "hw3build", "build", "--config", str(self.config), "--build-dir",
            str(self.build_dir), "--data-dir", str(self.data_dir), "--lock-timeout", "0", *extra,
        ]  # fmt: skip

    def start(
        self, *extra: str, failpoint: str | None = None, action: str | None = None, log: str = "build.log"
    ) -> subprocess.Popen:
        """A build in its own process group (so a kill reaches everything it started)."""
        (self.logs / "paused.pid").unlink(missing_ok=True)
        out = open(self.logs / log, "w")  # noqa: SIM115 - the child writes it; closed with the process
        return subprocess.Popen(
            self.command(*extra), cwd=REPO, env=self.env(failpoint, action), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_sigint_as_in_a_terminal,
        )  # fmt: skip

    def build(
        self, *extra: str, failpoint: str | None = None, action: str | None = None, log: str = "rebuild.log"
    ) -> tuple[int, str]:
        proc = self.start(*extra, failpoint=failpoint, action=action, log=log)
        try:
            code = proc.wait(timeout=BUILD_TIMEOUT_S)
        finally:
            _kill_group(proc)
        return code, (self.logs / log).read_text(errors="replace")

    def wait_paused(self, proc: subprocess.Popen, timeout_s: float = BUILD_TIMEOUT_S) -> None:
        """Until the build reports it stopped at its failpoint (fails if it ended first)."""
        self.wait_until(proc, lambda: (self.logs / "paused.pid").is_file(), timeout_s)

    def wait_until(self, proc: subprocess.Popen, condition, timeout_s: float = BUILD_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if proc.poll() is not None:
                log = next(iter(sorted(self.logs.glob("*.log"), key=lambda p: p.stat().st_mtime)[-1:]), None)
                pytest.fail(f"the build ended (exit {proc.returncode}) before the point to kill it:\n"
                            f"{log.read_text(errors='replace')[-3000:] if log else ''}")  # fmt: skip
            if time.monotonic() > deadline:
                _kill_group(proc)
                pytest.fail("the build never reached the point to kill it")
            time.sleep(0.05)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the build's whole process group (the build, latexmk, xelatex, the theory checks)."""
    _kill_group(proc)


def leftovers(build_dir: Path) -> list[str]:
    """Temporary files and folders a killed build could leave (an independent list, not the build's)."""
    found = []
    for path in build_dir.rglob("*"):
        name = path.name
        if name.startswith((".tmp-", ".old-", ".tex-")) or ".tmp" in name or name == "tex.old":
            found.append(str(path.relative_to(build_dir)))
    staging = build_dir / "dist" / ".staging"
    if staging.is_dir():
        found += [str(p.relative_to(build_dir)) for p in staging.iterdir()]
    return sorted(found)


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is inside ``folder`` (a kernel, latexmk, xelatex)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = (entry / "cwd").resolve()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == folder or folder in cwd.parents):
            pids.append(int(entry.name))
    return pids


def assert_nothing_left_behind(project: Project) -> None:
    assert leftovers(project.build_dir) == []
    deadline = time.monotonic() + 30  # a kernel notices its parent died within a few seconds
    while processes_in(project.build_dir.resolve()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_in(project.build_dir.resolve()) == []
    with build_lock(project.build_dir, timeout=0):
        pass


def _sigint_as_in_a_terminal() -> None:
    """The build's Ctrl-C as a terminal's foreground job has it. A test run started in the background
    (`cmd &` in a script) hands its children SIGINT ignored (POSIX), and Python then installs no
    KeyboardInterrupt handler, so a test's SIGINT would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
