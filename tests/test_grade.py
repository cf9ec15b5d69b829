"""invoke grade: a Moodle-shaped corpus of >= 30 submissions gets exactly the expected row each, nothing
crashes the batch, and the process runner turns a hang, a crash or a memory blow-up into a row."""

from __future__ import annotations

import csv
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from grade_corpus import Corpus, build_corpus, stand_in_notebook
from hw3grade.cli import grade, main
from hw3grade.discover import Submission, discover
from hw3grade.rules import RULE_KEYS
from hw3grade.runner import Budget, run_all
from hw3grade.writers import csv_columns


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(stand_in_notebook(), tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def graded(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    out = tmp_path_factory.mktemp("grade")
    rows = grade([corpus.archive], out, jobs=2, progress=False, echo=lambda line: None)
    return out, {row["key"]: row for row in rows}


def test_the_corpus_is_large_enough_and_every_submission_has_a_row(corpus: Corpus, graded) -> None:
    _, rows = graded
    assert len(corpus.expected) >= 30
    assert set(rows) == set(corpus.expected)


def _statuses(row: dict, status: str) -> set[str]:
    return {key for key, rule in row["rules"].items() if rule["status"] == status}


def test_every_submission_gets_its_expected_row(corpus: Corpus, graded) -> None:
    _, rows = graded
    wrong = {}
    for key, expected in corpus.expected.items():
        row = rows[key]
        got = {
            "status": row["status"],
            "fail": _statuses(row, "fail"),
            "warn": _statuses(row, "warn"),
            "test_ppl": row["facts"].get("test_ppl"),
            "ids": row["ids"],
        }
        want = {
            "status": expected.status,
            "fail": expected.fail,
            "warn": expected.warn,
            "test_ppl": expected.test_ppl,
            "ids": expected.ids,
        }
        missing_flags = [f for f in expected.flags if not any(f in flag for flag in row["flags"])]
        if got != want or missing_flags or (not expected.flags and row["flags"]):
            details = {k: r["detail"] for k, r in row["rules"].items() if r["status"] in ("fail", "warn")}
            wrong[key] = {"got": got, "want": want, "flags": row["flags"], "details": details}
    assert not wrong, json.dumps(wrong, default=sorted, ensure_ascii=False)


def test_every_validator_check_lands_in_a_named_column(graded) -> None:
    _, rows = graded
    assert all(row["rules"]["other"]["status"] == "na" for row in rows.values())


def test_the_grader_facts_of_a_valid_submission(corpus: Corpus, graded) -> None:
    _, rows = graded
    row = rows[next(k for k in corpus.expected if k.startswith("Alice Levi_"))]
    facts = row["facts"]
    assert [s["name"] for s in facts["students"]] == ["Alice Levi", "Bob Cohen"]
    assert [s["id"] for s in facts["students"]] == row["ids"]
    assert facts["hparams"] == {
        "emsize": 250,
        "nhid": 250,
        "nlayers": 4,
        "nhead": 2,
        "dropout": 0.1,
        "lr": 0.005,
        "optimizer": "Adam",
    }
    assert facts["valid_curve"] == [270.43, 200.34]
    assert facts["draft"] is False
    assert facts["pdf_pages"] == 9
    assert facts["answer_pages"] == {"Q2": 3, "T1": 5, "T2": 6, "T3": 7, "T4": 8, "T5": 9}
    assert facts["run_seconds"] == 2100.5
    assert facts["answer_cells"] == {"T1": 2, "T2": 4, "T3": 6, "T4": 8, "T5": 12}


def test_a_hebrew_group_keeps_its_name(corpus: Corpus, graded) -> None:
    _, rows = graded
    key = next(k for k in corpus.expected if k.startswith("דנה כהן_"))
    assert rows[key]["group"] == "דנה כהן"
    assert rows[key]["facts"]["students"][0]["name"] == "דנה כהן"


def test_csv_has_a_column_per_rule_and_a_row_per_submission(graded) -> None:
    out, rows = graded
    with (out / "grades.csv").open(encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == csv_columns()
    assert len(set(csv_columns())) == len(csv_columns())
    assert set(RULE_KEYS) <= set(table[0])
    assert {line["key"] for line in table} == set(rows)
    for line in table:
        assert line["status"] == rows[line["key"]]["status"]
        assert line["name"].split(":")[0] == rows[line["key"]]["rules"]["name"]["status"]


def test_one_json_per_submission_and_the_evidence_it_names(graded) -> None:
    out, rows = graded
    files = sorted((out / "json").glob("*.json"))
    assert len(files) == len(rows)
    for path in files:
        row = json.loads(path.read_text(encoding="utf-8"))
        assert rows[row["key"]]["status"] == row["status"]
        for relative in row["evidence"].values():
            assert (out / relative).is_file()


def test_the_page_lists_failing_rows_first(graded) -> None:
    out, rows = graded
    html = (out / "index.html").read_text(encoding="utf-8")
    order = [
        line.split('data-status="')[1].split('"')[0]
        for line in html.splitlines()
        if "<tr data-status=" in line
    ]
    assert len(order) == len(rows)
    assert order == sorted(order, key=["fail", "warn", "flag", "ok", "na"].index)


def test_the_notebook_page_escapes_what_a_submission_holds(tmp_path: Path) -> None:
    from hw3grade.evidence import write_evidence
    from nbformat.v4 import new_code_cell, new_output

    nb = stand_in_notebook()
    nb.cells.append(
        new_code_cell(
            "<script>alert(1)</script>",
            execution_count=99,
            outputs=[new_output("display_data", data={"text/html": "<script>alert(2)</script>"})],
        )
    )
    written = write_evidence(tmp_path / "evidence", "group", nb, None)
    html = (tmp_path / written["notebook"]).read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "alert(2)" not in html  # HTML outputs are never shown


# --- discovery ------------------------------------------------------------------------------------------


def test_discovery_of_folders_flat_names_and_loose_files(tmp_path: Path) -> None:
    moodle = tmp_path / "moodle.zip"
    with zipfile.ZipFile(moodle, "w") as archive:
        archive.writestr("Group A_11_assignsubmission_file_/a.zip", b"x")
        archive.writestr("Group B_12_assignsubmission_file_b.ipynb", b"{}")  # Moodle's flat form
        archive.writestr("__MACOSX/Group A_11_assignsubmission_file_/._a.zip", b"x")
        archive.writestr("stray.ipynb", b"{}")
    loose = tmp_path / "ece046211_hw3_123456782_012345674.zip"
    loose.write_bytes(b"x")
    found = {s.key: s for s in discover([moodle, loose])}
    assert set(found) == {
        "Group A_11_assignsubmission_file_",
        "Group B_12_assignsubmission_file_",
        "stray.ipynb",
        loose.name,
    }
    assert found["Group A_11_assignsubmission_file_"].junk == (
        "__MACOSX/Group A_11_assignsubmission_file_/._a.zip",
    )
    assert found["Group A_11_assignsubmission_file_"].group == "Group A"
    assert found[loose.name].origin == "folder"


def test_a_missing_source_is_an_error_not_an_empty_page(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nothing.zip"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the runner: one process per submission, with a time and a memory limit -----------------------------


def _hang(submission, evidence_dir, limits):
    time.sleep(60)


def _die(submission, evidence_dir, limits):
    os._exit(3)


def _raise(submission, evidence_dir, limits):
    raise ValueError("a bug")


def _eat_memory(submission, evidence_dir, limits):
    hog = bytearray(6 << 30)
    return {"never": len(hog)}


def _fine(submission, evidence_dir, limits):
    return {"key": submission.key, "status": "ok", "rules": {}}


@pytest.mark.parametrize(
    ("check", "prefix"),
    [(_hang, "time:"), (_die, "crash:"), (_raise, "crash: ValueError"), (_eat_memory, "memory:")],
    ids=["hang", "exit", "exception", "memory"],
)
def test_a_submission_that_hangs_or_dies_gets_a_row_and_the_batch_goes_on(check, prefix: str) -> None:
    subs = [Submission(f"s{i}", "folder", "/nonexistent", ()) for i in range(3)]
    budget = Budget(seconds=3, memory_bytes=1 << 30)
    started = time.monotonic()
    rows = run_all(subs, None, jobs=3, budget=budget, progress=False, check=check)
    assert time.monotonic() - started < 30
    assert [row["key"] for row in rows] == ["s0", "s1", "s2"]
    for row in rows:
        assert row["status"] == "fail"
        assert row["rules"]["limits"]["detail"].startswith(prefix), row["rules"]["limits"]
    fine = run_all(subs, None, jobs=2, budget=budget, progress=False, check=_fine)
    assert [row["status"] for row in fine] == ["ok"] * 3
