"""The reliability table's generator: it writes only when asked, after a complete run, and says in its
opening sentence which commit and day it was generated from."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest
from scenarios import ROWS


def _session(write: bool) -> SimpleNamespace:
    options = {conftest.WRITE_OPTION: write}
    config = SimpleNamespace(
        getoption=lambda name, default=None: options.get(name, default),
        pluginmanager=SimpleNamespace(get_plugin=lambda name: None),
    )
    return SimpleNamespace(config=config)


def test_the_table_is_written_only_when_asked_after_every_row_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "reliability.md"
    monkeypatch.setattr(conftest, "TABLE", table)
    monkeypatch.setattr(conftest, "_RESULTS", {row.id: "passed" for row in ROWS})
    conftest.pytest_sessionfinish(_session(write=False), 0)
    assert not table.exists()  # a test run never rewrites the tracked file
    monkeypatch.setattr(conftest, "_RESULTS", {row.id: "passed" for row in ROWS[1:]})
    conftest.pytest_sessionfinish(_session(write=True), 0)
    assert not table.exists()  # not every scenario ran
    monkeypatch.setattr(conftest, "_RESULTS", {row.id: "passed" for row in ROWS})
    conftest.pytest_sessionfinish(_session(write=True), 0)
    assert table.is_file()


def test_the_opening_names_the_commit_and_day_it_was_generated_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conftest, "TABLE", tmp_path / "reliability.md")
    results = {row.id: "passed" for row in ROWS}
    conftest.write_table(results, {"commit": "0123456789abcdef" * 2, "dirty": True}, date(2026, 12, 7))
    opening = " ".join((tmp_path / "reliability.md").read_text().split("\n\n")[1].split())
    assert f"complete run of all its {len(ROWS)} scenarios" in opening
    assert "at commit 0123456789ab with uncommitted changes on 2026-12-07" in opening
