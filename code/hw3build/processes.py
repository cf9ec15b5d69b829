"""Running a tool (the theory checks, latexmk) with a time limit that stops everything it started.

``subprocess.run(timeout=...)`` kills only the direct child: latexmk's xelatex, or the latexmk that the
theory checks start, would run on, holding the build folder. The children stay in the build's process group
(so a Ctrl-C or a ``kill`` of the build's group reaches them too), and on a timeout or an interruption the
whole tree under the child is killed, found through each process's parent in ``/proc/<pid>/stat``
(Linux). psutil would do this portably, but it is not among our dependencies; where there is no /proc
only the direct child is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hw3build.errors import BuildError


class ToolTimeout(BuildError, RuntimeError):
    """The tool ran past its time limit and was stopped with everything it started."""

    def __init__(self, what: str, timeout_s: float, output: str) -> None:
        self.output = output
        super().__init__(f"{what} did not finish within its {timeout_s:g} s limit and was stopped")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from ``/proc/<pid>/stat`` (empty where there is no /proc)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every process started (directly or not) by ``pid`` that is still alive, parents first."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(0), []):
            found.append(child)
            pending.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started (listed first: a dead parent orphans its children)."""
    for target in [pid, *descendants(pid)]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_tool(
    command: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    timeout_s: float | None,
    what: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end (output captured, never raises for its exit code).

    Raises :class:`ToolTimeout` after ``timeout_s`` seconds (None: no limit), having killed the tree.
    """
    with subprocess.Popen(
        list(command), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            stdout, stderr = proc.communicate()
            raise ToolTimeout(what, float(timeout_s or 0), (stdout or "") + (stderr or "")) from None
        except BaseException:  # Ctrl-C or any error here: nothing it started may outlive the build
            kill_tree(proc.pid)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
