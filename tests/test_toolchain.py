"""The tools the build runs: declared once (setup.sh agrees), TeX run without shell escape, with paranoid
file access and a reduced environment, and every tool stopped, with all it started, at its time limit."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from hw3build import record
from hw3build.processes import ToolTimeout, run_tool
from hw3build.report import latex
from hw3build.report.latex import ReportError, run_latexmk, tex_environment

REPO = Path(__file__).resolve().parents[1]


def test_setup_sh_installs_the_declared_packages_and_checks_the_build_tools() -> None:
    text = (REPO / "setup.sh").read_text(encoding="utf-8")
    packages = re.search(r'^TEX_PACKAGES="([^"]+)"', text, re.M)
    assert packages is not None and tuple(packages.group(1).split()) == latex.TEX_PACKAGES
    checked = re.search(r"for tool in ([^;]+); do", text)
    assert checked is not None and set(latex.REQUIRED_TOOLS) <= set(checked.group(1).split())
    assert latex.APT_INSTALL.endswith(" ".join(latex.TEX_PACKAGES))
    assert not hasattr(record, "TEX_TOOLS")  # the build record lists latex.REQUIRED_TOOLS' versions


def test_tex_gets_only_what_it_needs_from_the_environment() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/s", "AWS_SECRET_ACCESS_KEY": "x", "TEXINPUTS": "/evil//"}
    env = tex_environment(1_700_000_000, base)
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/s"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "TEXINPUTS" not in env
    assert env["openin_any"] == env["openout_any"] == "p" and env["SOURCE_DATE_EPOCH"] == "1700000000"


PROBE = r"""\documentclass{article}
\begin{document}
\typeout{PROBE shellescape=\the\shellescape}
\immediate\write18{echo escaped > shell-escape-ran.txt}
\newread\probe
\openin\probe=/etc/hostname
\ifeof\probe\typeout{PROBE openin=refused}\else\typeout{PROBE openin=allowed}\fi
\immediate\openout\probe=../outside.txt
\immediate\write\probe{escaped}
\immediate\closeout\probe
probe
\end{document}
"""


@pytest.mark.tex
def test_tex_runs_without_shell_escape_and_cannot_read_or_write_outside_its_folder(tmp_path: Path) -> None:
    work = tmp_path / "tex"
    work.mkdir()
    (work / "probe.tex").write_text(PROBE)
    try:
        run_latexmk(work / "probe.tex", source_date_epoch=1_700_000_000)
    except ReportError:  # the refused \openout may stop the run: the log says what happened either way
        pass
    log = (work / "probe.log").read_text(errors="replace")
    assert "PROBE shellescape=0" in log  # TeX Live's default is 2 (a list of allowed commands)
    assert "PROBE openin=refused" in log
    assert not (work / "shell-escape-ran.txt").exists()
    assert not (tmp_path / "outside.txt").exists()


def test_a_tool_past_its_limit_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    # A child that starts a grandchild (as latexmk starts xelatex); both sleep far past the limit.
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="within its 2 s limit") as stopped:
        run_tool([sys.executable, "-c", script], cwd=tmp_path, env=os.environ, timeout_s=2, what="the probe")
    assert time.monotonic() - started < 60
    assert "started" in stopped.value.output
    time.sleep(0.5)
    assert not [pid for pid in _all_pids() if "time.sleep(120)" in _cmdline(pid) and _running(pid)]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # not a zombie
    except OSError:
        return False


@pytest.mark.tex
def test_a_hung_tex_run_is_stopped(tmp_path: Path) -> None:
    (tmp_path / "loop.tex").write_text("\\def\\loop{\\loop}\\loop\n")
    started = time.monotonic()
    with pytest.raises(ReportError, match="did not finish in 3 s"):
        run_latexmk(tmp_path / "loop.tex", source_date_epoch=0, timeout_s=3)
    assert time.monotonic() - started < 60
    time.sleep(0.5)
    assert not [
        pid for pid in _all_pids() if "xelatex" in _cmdline(pid) and "loop" in _cmdline(pid) and _running(pid)
    ]


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").glob("[0-9]*")]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
