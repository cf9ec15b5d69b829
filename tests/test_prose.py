"""hw3build.notebook.prose: Task 5's answer in the shipped notebook, the students' own or the one written from
the run, checked before any training."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from hw3build.notebook.prose import (
    _SAMPLE_RECORD,
    TASK5_ANSWER_TAG,
    AnswerError,
    check_own_answer,
    fill_answers,
    task5_answer,
)
from hw3build.preflight import PreflightError, preflight
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

METRICS = {**_SAMPLE_RECORD, "test_ppl": 121.28}
METRICS["sense_check"] = {**_SAMPLE_RECORD["sense_check"], "pair_share": 0.78, "test_ppl": 121.28}


def shipped(tmp_path: Path) -> Path:
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell("placeholder")])
    nb.cells[1].metadata["tags"] = [TASK5_ANSWER_TAG]
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return path


def answer_cell(path: Path) -> str:
    return nbformat.read(path, as_version=4).cells[1].source


def test_without_their_own_answer_the_generated_one_is_shipped(tmp_path: Path) -> None:
    path = shipped(tmp_path)
    fill_answers(path, METRICS, tmp_path)
    text = answer_cell(path)
    assert text.startswith("**Do they make sense?**") and "78% of the adjacent word pairs" in text
    assert check_own_answer(tmp_path) is False


def test_their_own_answer_replaces_it_with_the_runs_numbers(tmp_path: Path) -> None:
    (tmp_path / "answers").mkdir()
    own = tmp_path / "answers" / "task5.md"
    own.write_text('Partly: {{ "%.0f" | format(sense.pair_share * 100) }}% of pairs, test {{ test_ppl }}.\n')
    assert check_own_answer(tmp_path) is True
    path = shipped(tmp_path)
    fill_answers(path, METRICS, tmp_path)
    assert answer_cell(path) == "**Do they make sense?** Partly: 78% of pairs, test 121.28."
    own.write_text("**Do they make sense?** In our words.")  # the question is not repeated
    assert task5_answer(METRICS, tmp_path) == "**Do they make sense?** In our words."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ test_perplexity }}", "'test_perplexity' is undefined; the names it may use: sense, test_ppl"),
        ("{{ sense.pairs }}", "has no attribute 'pairs'"),
        ("{% if %}", "line 1"),
        ("   \n", "is empty"),
    ],
)
def test_a_broken_answer_is_refused_before_any_training(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "task5.md").write_text(text)
    with pytest.raises(AnswerError, match="task5.md") as raised:
        check_own_answer(tmp_path)
    assert message in str(raised.value)


def test_the_preflight_names_a_broken_answer(tmp_path: Path, monkeypatch) -> None:
    import hw3build.preflight as preflight_module

    checks = (
        "check_tex_tools", "check_fonts", "check_sources", "check_name_glyphs", "check_cover", "check_training_device",
    )  # fmt: skip
    for check in checks:
        monkeypatch.setattr(preflight_module, check, lambda *a: None)
    assert "answers/task5.md" not in preflight(None, tmp_path)
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "task5.md").write_text("{{ nothing }}")
    with pytest.raises(PreflightError, match="'nothing' is undefined"):
        preflight(None, tmp_path)
    (tmp_path / "answers" / "task5.md").write_text("Yes.")
    assert "answers/task5.md" in preflight(None, tmp_path)
