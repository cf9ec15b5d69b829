"""``python -m hw3build <command>``: the build's one command line, the one invoke calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hw3build.cli import COMMANDS, main


def test_every_command_answers_help(capsys) -> None:
    for command in COMMANDS:
        try:
            main([command, "--help"])
        except SystemExit as exc:  # argparse's --help
            assert exc.code == 0
        assert f"python -m hw3build {command}" in capsys.readouterr().out


def test_an_unknown_command_is_refused_with_the_list(capsys) -> None:
    assert main(["bild"]) == 2
    err = capsys.readouterr().err
    assert all(f"``{command}``" in err for command in COMMANDS)


def test_clean_empties_a_build_folder_and_keeps_its_lock(tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / ".lock").write_text("")
    assert main(["clean", "--build-dir", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [".lock"] and "emptied" in capsys.readouterr().out


def test_python_dash_m_runs_it() -> None:
    done = subprocess.run([sys.executable, "-m", "hw3build"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "python -m hw3build <command>" in done.stderr
