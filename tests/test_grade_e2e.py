"""invoke grade on a real quick build: the zip the build made gets its row and its facts (the answers'
pages, Task 3's hyper-parameters, the test perplexity), and the corpus made from its notebook gets the
expected row for every submission. Minutes (the quick build is shared with the other e2e tests)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pytest
from grade_corpus import as_final, build_corpus
from hw3build.submission.config import load_config
from hw3grade.cli import grade
from hw3grade.writers import ANSWER_KEYS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


def test_the_real_submission_gets_its_row_and_facts(quick_build, tmp_path: Path) -> None:
    zip_path = Path(quick_build.zip_path)
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as moodle:
        moodle.write(zip_path, f"Student 1 and Student 2_7_assignsubmission_file_/{zip_path.name}")
    (row,) = grade([archive], tmp_path / "out", jobs=1, progress=False, echo=lambda line: None)
    failing = {key: rule["detail"] for key, rule in row["rules"].items() if rule["status"] == "fail"}
    assert not failing
    warned = {key for key, rule in row["rules"].items() if rule["status"] == "warn"}
    assert warned <= {"draft", "placeholder", "ids"}  # a quick build of the placeholder students
    facts = row["facts"]
    assert set(facts["answer_pages"]) == set(ANSWER_KEYS), facts["answer_pages"]
    assert all(1 <= page <= facts["pdf_pages"] for page in facts["answer_pages"].values())
    tasks = [facts["answer_pages"][f"T{n}"] for n in range(1, 6)]
    assert tasks == sorted(tasks)
    hparams = load_config(REPO / "submission.toml", profile="quick").hparams
    names = ("emsize", "nhid", "nlayers", "nhead", "dropout", "lr", "optimizer")
    assert facts["hparams"] == {name: getattr(hparams, name) for name in names}
    assert facts["test_ppl"] == pytest.approx(quick_build.test_ppl, abs=0.01)
    assert len(facts["valid_curve"]) == hparams.epochs
    assert [s["id"] for s in facts["students"]] == row["ids"]


def test_the_corpus_from_the_real_notebook_gets_the_expected_rows(quick_build, tmp_path: Path) -> None:
    with zipfile.ZipFile(quick_build.zip_path) as submission:
        name = next(n for n in submission.namelist() if n.endswith(".ipynb"))
        nb = nbformat.reads(submission.read(name).decode(), as_version=4)
    corpus = build_corpus(as_final(nb), tmp_path)
    rows = {
        row["key"]: row
        for row in grade([corpus.archive], tmp_path / "out", jobs=2, progress=False, echo=lambda line: None)
    }
    wrong = {}
    for key, expected in corpus.expected.items():
        row = rows[key]
        got = (
            row["status"],
            {k for k, r in row["rules"].items() if r["status"] == "fail"},
            {k for k, r in row["rules"].items() if r["status"] == "warn"},
            row["facts"].get("test_ppl"),
        )
        if got != (expected.status, expected.fail, expected.warn, expected.test_ppl):
            wrong[key] = (
                got,
                {k: r["detail"] for k, r in row["rules"].items() if r["status"] in ("fail", "warn")},
            )
    assert not wrong, wrong
