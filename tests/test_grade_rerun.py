"""--rerun on a tiny notebook (seconds, not a training run): papermill re-executes it in a temporary folder
and its printed test perplexity is compared with the reported one. What is tested is the mechanism (run,
parse, compare, time limit); a real re-run of a full notebook needs a GPU machine and is not tested here."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pytest
from grade_corpus import valid_ids
from hw3grade.cli import grade
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

pytestmark = pytest.mark.slow

SOURCE = 'import math\ntest_loss = {loss}\nprint(f"| End of training | test loss {{test_loss:5.2f}} | test ppl {{math.exp(test_loss):8.2f}}")'


def tiny_notebook(loss: float, reported: float) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        new_markdown_cell("### Task 4 - Train and Evaluate the Language Model"),
        new_code_cell(
            SOURCE.format(loss=loss),
            execution_count=1,
            outputs=[
                new_output(
                    "stream",
                    name="stdout",
                    text=f"| End of training | test loss x | test ppl {reported:8.2f}\n",
                )
            ],
        ),
    ]
    return nb


def test_rerun_confirms_the_reported_perplexity_or_says_it_differs(tmp_path: Path) -> None:
    ids = valid_ids(6)
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as moodle:
        for n, (reported, loss) in enumerate(((148.41, 5.0), (120.0, 5.0))):
            stem = f"ece046211_hw3_{ids[2 * n]}_{ids[2 * n + 1]}"
            moodle.writestr(
                f"g{n}_{n}_assignsubmission_file_/{stem}.ipynb",
                nbformat.writes(tiny_notebook(loss, reported)),
            )
        slow = f"ece046211_hw3_{ids[4]}_{ids[5]}"
        nb = tiny_notebook(5.0, 148.41)
        nb.cells[1].source = "import time\ntime.sleep(60)\n" + nb.cells[1].source
        moodle.writestr(f"g2_2_assignsubmission_file_/{slow}.ipynb", nbformat.writes(nb))
    lines: list[str] = []
    rows = grade(
        [archive], tmp_path / "out", jobs=2, rerun=True, rerun_seconds=10, progress=False, echo=lines.append
    )
    assert lines[0].startswith("re-running 3 notebooks on ")  # the estimate comes first
    reruns = {row["key"].split("_")[0]: row["rerun"] for row in rows}
    assert reruns["g0"]["status"] == "ok" and reruns["g0"]["test_ppl"] == pytest.approx(148.41)
    assert reruns["g1"]["status"] == "fail" and "reported 120" in reruns["g1"]["detail"]
    assert reruns["g2"]["status"] == "fail"  # past its time limit
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "fail: re-run 148.41, reported 120" in page
