"""benchmarks/bench_sweep.py as a user runs it: from any folder, with a relative data path."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_fixtures import load_benchmark, write_corpus


@pytest.mark.slow
def test_a_relative_corpus_path_is_found_from_the_studys_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    argv = ["--corpus", "corpus", "--workers", "1", "--trials", "1", "--batches", "2", "--epochs", "1"]
    assert load_benchmark("bench_sweep").main([*argv, "--device", "cpu"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 1 and rows[0].split()[0] == "1" and float(rows[0].split()[2]) > 0  # K, s, trials/h
