"""The validator passes a good submission and rejects each broken rule, one at a time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hw3build.submission.validate import OK, WARN, find_zip, main, validate_zip
from nbformat.v4 import new_code_cell, new_output
from submission_fixtures import (
    ID1,
    ID2,
    STEM,
    executed_notebook,
    good_pdf_pages,
    heading_lines,
    notebook_bytes,
    pdf_bytes,
    submission_zip,
    write_zip,
)


def failed_titles(report) -> list[str]:
    return [check.title for check in report.failures]


def test_good_submission_passes_standard_and_strict(tmp_path: Path) -> None:
    zip_path = submission_zip(tmp_path)
    for strict in (False, True):
        report = validate_zip(zip_path, strict=strict)
        assert report.ok, report.format()
        assert not report.warnings
    text = report.format(unicode=True)
    assert "\u2713 every code cell was executed" in text
    assert text.splitlines()[-1] == "PASSED"


def test_a_third_file_is_rejected(tmp_path: Path) -> None:
    report = validate_zip(submission_zip(tmp_path, extra={"notes.py": b"print(1)\n"}))
    assert failed_titles(report) == ["exactly two files, the .ipynb and the .pdf, named after the IDs"]
    assert "notes.py" in report.failures[0].detail


def test_a_missing_pdf_is_rejected(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path / f"{STEM}.zip", {f"{STEM}.ipynb": notebook_bytes(executed_notebook())})
    assert not validate_zip(zip_path).ok


@pytest.mark.parametrize("zip_name", ["hw3.zip", "ece046211_hw3_12345678_012345674.zip", f"{STEM}.ZIP"])
def test_a_wrong_zip_name_is_rejected(tmp_path: Path, zip_name: str) -> None:
    report = validate_zip(submission_zip(tmp_path, zip_name=zip_name))
    assert failed_titles(report) == ["zip named ece046211_hw3_<id1>_<id2>.zip"]


def test_members_named_after_other_ids_are_rejected(tmp_path: Path) -> None:
    # The zip is named after ID1_ID2 but holds files named ID2_ID1.
    zip_path = submission_zip(tmp_path, ids=(ID2, ID1), zip_name=f"{STEM}.zip")
    report = validate_zip(zip_path)
    assert "exactly two files, the .ipynb and the .pdf, named after the IDs" in failed_titles(report)


def test_members_in_a_folder_are_rejected(tmp_path: Path) -> None:
    members = {
        f"hw3/{STEM}.ipynb": notebook_bytes(executed_notebook()),
        f"hw3/{STEM}.pdf": pdf_bytes([["x"]]),
    }
    assert not validate_zip(write_zip(tmp_path / f"{STEM}.zip", members)).ok


def test_the_same_id_twice_is_rejected(tmp_path: Path) -> None:
    report = validate_zip(submission_zip(tmp_path, ids=(ID1, ID1)))
    assert "two different student IDs" in failed_titles(report)


def test_an_unexecuted_cell_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.cells[3].execution_count = None
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["every code cell was executed"]
    assert "[3]" in report.failures[0].detail


def test_out_of_order_execution_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.cells[4].execution_count = 1  # ran before cell 3 (count 2)
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["execution counts strictly increase top to bottom"]


def test_an_error_output_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.cells.append(
        new_code_cell(
            "1 / 0",
            execution_count=5,
            outputs=[new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])],
        )
    )
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["no error outputs"]
    assert "ZeroDivisionError" in report.failures[0].detail


def test_a_printing_cell_without_output_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.cells[3].outputs = []  # print(train_data.shape) ran but its output was not saved
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["cells that print have their outputs saved"]


def test_prints_inside_definitions_and_magics_need_no_output(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.cells.append(
        new_code_cell(
            "!pip install torchdata\nclass A:\n    def f(self):\n        print(1)", execution_count=5
        )
    )
    assert validate_zip(submission_zip(tmp_path, nb=nb)).ok


def test_a_notebook_without_any_output_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.execution_count is not None:
            cell.outputs = []
            cell.source = "x = 1"
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["cells that print have their outputs saved"]


def test_the_papermill_exception_flag_is_rejected(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.metadata["papermill"]["exception"] = True
    report = validate_zip(submission_zip(tmp_path, nb=nb))
    assert failed_titles(report) == ["papermill recorded no exception"]


def test_a_corrupt_notebook_is_rejected(tmp_path: Path) -> None:
    members = {f"{STEM}.ipynb": b"{not json", f"{STEM}.pdf": pdf_bytes(good_pdf_pages())}
    report = validate_zip(write_zip(tmp_path / f"{STEM}.zip", members))
    assert failed_titles(report) == [f"{STEM}.ipynb is a valid notebook"]


def test_a_corrupt_pdf_is_rejected(tmp_path: Path) -> None:
    members = {f"{STEM}.ipynb": notebook_bytes(executed_notebook()), f"{STEM}.pdf": b"%PDF-1.4 garbage"}
    report = validate_zip(write_zip(tmp_path / f"{STEM}.zip", members))
    assert failed_titles(report) == [f"{STEM}.pdf opens"]


def test_a_pdf_missing_a_heading_is_rejected(tmp_path: Path) -> None:
    pages = [page for page in good_pdf_pages() if not page[0].startswith("Task 3")]
    report = validate_zip(submission_zip(tmp_path, pages=pages))
    assert failed_titles(report) == ["every question and task heading is in the PDF"]
    assert "Task 3 - Define Hyperparameters and Initialize the Model" in report.failures[0].detail


def test_headings_match_across_line_breaks_and_punctuation(tmp_path: Path) -> None:
    pages = [["Question 1: Transformers", "Efficiency"], ["Q2 \u2014 Preventing Variance Explosion"]]
    pages += [[line.replace(" - ", " \u2013 ").upper()] for line in heading_lines()[2:]]
    assert validate_zip(submission_zip(tmp_path, pages=pages)).ok


def test_headings_out_of_order_are_rejected(tmp_path: Path) -> None:
    lines = heading_lines()
    pages = [[line] for line in lines[3:] + lines[:3]]  # the tasks before the questions
    report = validate_zip(submission_zip(tmp_path, pages=pages))
    assert failed_titles(report) == ["headings in the assignment's order"]


@pytest.mark.parametrize("raw", ["where $x \\in R^d$ holds", "V = \\frac{QK^T}{\\sqrt{D}} V"])
def test_raw_latex_in_the_pdf_text_is_rejected(tmp_path: Path, raw: str) -> None:
    report = validate_zip(submission_zip(tmp_path, pages=good_pdf_pages(extra=[raw])))
    assert failed_titles(report) == ["equations rendered (no raw $ or LaTeX commands in the text)"]


SAMPLED = r"the prize was $ 1 @,@ 000 in 1990 , and \frac { a } { b } of it was paid"


def _printing(text: str):
    nb = executed_notebook()
    nb.cells.append(
        new_code_cell(
            "print(sentence)",
            execution_count=99,
            outputs=[new_output("stream", name="stdout", text=text + "\n")],
        )
    )
    return nb


def test_what_the_run_printed_is_literal_text_in_the_pdf(tmp_path: Path) -> None:
    # WikiText-2's text holds "$" tokens: a sampled sentence the PDF shows as printed (wrapped across
    # lines, as the report wraps outputs) is not an unrendered equation.
    wrapped = SAMPLED[:40] + "\n" + SAMPLED[40:]
    for folder, pages in (
        ("a", good_pdf_pages(extra=[wrapped])),
        ("b", good_pdf_pages(extra=["1. " + SAMPLED])),
    ):
        report = validate_zip(submission_zip(tmp_path / folder, nb=_printing(SAMPLED), pages=pages))
        assert report.ok, report.format()


@pytest.mark.parametrize(
    ("printed", "pdf_line"),
    [
        ("nothing of the kind", SAMPLED),  # the PDF shows it but the run never printed it
        (SAMPLED, SAMPLED + " and where $x \\in R^d$ holds"),  # printed text beside an unrendered equation
        ("cost $", "the cost $x^2$ grows"),  # a lone "$" in an output exempts no other "$"
    ],
)
def test_only_what_the_run_printed_is_exempt(tmp_path: Path, printed: str, pdf_line: str) -> None:
    report = validate_zip(
        submission_zip(tmp_path, nb=_printing(printed), pages=good_pdf_pages(extra=[pdf_line]))
    )
    assert failed_titles(report) == ["equations rendered (no raw $ or LaTeX commands in the text)"]


def test_placeholder_ids_warn_by_default_and_fail_under_strict(tmp_path: Path) -> None:
    zip_path = submission_zip(tmp_path, ids=("123456789", "987654321"))
    standard = validate_zip(zip_path)
    assert standard.ok, standard.format()
    assert [c.status for c in standard.checks[:4]] == [OK, OK, WARN, WARN]
    strict = validate_zip(zip_path, strict=True)
    assert failed_titles(strict) == [
        "ID 123456789 is a real student ID",
        "ID 987654321 is a real student ID",
    ]


def test_placeholder_emails_in_the_notebook_fail_under_strict(tmp_path: Path) -> None:
    nb = executed_notebook(students_line="Student 1, student_1@campus.technion.ac.il")
    zip_path = submission_zip(tmp_path, nb=nb)
    assert validate_zip(zip_path).ok
    assert [c.status for c in validate_zip(zip_path).checks if "placeholder" in c.title] == [WARN]
    assert failed_titles(validate_zip(zip_path, strict=True)) == [
        "no placeholder student data in the notebook or PDF"
    ]


def test_the_placeholder_marker_fails_under_strict(tmp_path: Path) -> None:
    # Real IDs and e-mails, but a name left as "Student 1": the build marks the table, the validator sees it.
    nb = executed_notebook(students_line="> **PLACEHOLDER STUDENT DETAILS - EDIT `submission.toml`**")
    zip_path = submission_zip(tmp_path, nb=nb)
    assert validate_zip(zip_path).ok
    assert failed_titles(validate_zip(zip_path, strict=True)) == [
        "no placeholder student data in the notebook or PDF"
    ]


@pytest.mark.parametrize(
    ("parameters", "standard", "strict"),
    [
        ({"profile": "quick", "lr": 0.005}, WARN, "fail"),
        ({"profile": "full", "lr": 0.005}, OK, OK),
        ({"profile": "full", "epochs": 4, "max_train_batches": None, "max_eval_batches": None}, OK, OK),
        # a draft is what was run, not the profile's name
        ({"profile": "full", "epochs": 4, "max_train_batches": 150}, WARN, "fail"),
        ({"profile": "full", "epochs": 1}, WARN, "fail"),
        ({"profile": "full", "max_eval_batches": 2}, WARN, "fail"),
    ],
)
def test_a_draft_build_is_refused_under_strict(
    tmp_path: Path, parameters: dict, standard: str, strict: str
) -> None:
    nb = executed_notebook()
    nb.metadata["papermill"]["parameters"] = parameters
    zip_path = submission_zip(tmp_path, nb=nb)
    title = "trained as the full profile does (not a DRAFT)"
    assert [c.status for c in validate_zip(zip_path).checks if c.title == title] == [standard]
    assert [c.status for c in validate_zip(zip_path, strict=True).checks if c.title == title] == [strict]


@pytest.mark.parametrize("strict", [False, True])
def test_a_bad_check_digit_is_rejected(tmp_path: Path, strict: bool) -> None:
    bad = ID1[:-1] + str((int(ID1[-1]) + 1) % 10)
    report = validate_zip(submission_zip(tmp_path, ids=(bad, ID2)), strict=strict)
    assert failed_titles(report) == [f"ID {bad} has a valid check digit"]


def test_checklist_has_an_ascii_fallback(tmp_path: Path) -> None:
    nb = executed_notebook()
    nb.metadata["papermill"]["exception"] = True
    text = validate_zip(submission_zip(tmp_path, nb=nb)).format(unicode=False)
    assert "[ok]" in text and "[FAIL] papermill recorded no exception" in text
    assert text.splitlines()[-1] == "FAILED (1 rule(s) broken)"
    text.encode("ascii")


def test_cli_exit_codes_and_default_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = submission_zip(tmp_path / "dist")
    assert find_zip(tmp_path / "dist") == good
    assert main(["--dist-dir", str(tmp_path / "dist")]) == 0
    assert "PASSED" in capsys.readouterr().out
    nb = executed_notebook()
    nb.cells[3].execution_count = None
    bad = submission_zip(tmp_path / "bad", nb=nb)
    assert main([str(bad)]) == 1
    assert main(["--strict", str(submission_zip(tmp_path / "ph", ids=("123456789", "987654321")))]) == 1
    assert main([str(tmp_path / "missing.zip")]) == 2
    assert main(["--dist-dir", str(tmp_path / "empty")]) == 2


def _xelatex_pdf(folder: Path, body: str) -> bytes:
    if shutil.which("xelatex") is None:
        pytest.fail("xelatex not found: install TeX Live (see setup.sh)")
    folder.mkdir(parents=True, exist_ok=True)
    headings = "\n".join(f"\\section*{{{line}}}" for line in heading_lines())
    tex = f"\\documentclass{{article}}\n\\usepackage{{amsmath,amssymb}}\n\\begin{{document}}\n{body}\n{headings}\n\\end{{document}}\n"
    (folder / "doc.tex").write_text(tex, encoding="utf-8")
    subprocess.run(
        ["xelatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (folder / "doc.pdf").read_bytes()


@pytest.mark.tex
def test_equations_typeset_by_xelatex_pass_and_verbatim_latex_fails(tmp_path: Path) -> None:
    typeset = (
        r"$$SA(X) = \text{softmax}\left(\frac{QK^T}{\sqrt{D}}\right) V, \quad X \in \mathbb{R}^{T \times d}$$"
    )
    verbatim = r"\verb|$\frac{QK^T}{\sqrt{D}}$|"
    nb = notebook_bytes(executed_notebook())
    for name, body, should_pass in (("typeset", typeset, True), ("verbatim", verbatim, False)):
        pdf = _xelatex_pdf(tmp_path / name, body)
        zip_path = write_zip(tmp_path / name / f"{STEM}.zip", {f"{STEM}.ipynb": nb, f"{STEM}.pdf": pdf})
        report = validate_zip(zip_path)
        assert report.ok is should_pass, report.format()
        if not should_pass:
            assert failed_titles(report) == ["equations rendered (no raw $ or LaTeX commands in the text)"]


def test_validate_says_in_one_line_what_is_wrong_with_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "submission.toml"
    config.write_bytes('[[students]]\nname = "שרה"\n'.encode("cp1255"))
    assert main([str(submission_zip(tmp_path / "dist")), "--config", str(config)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "save it as UTF-8" in warnings[0]


def test_a_name_is_literal_text_even_where_the_pdf_moves_a_space_at_a_direction_change(
    tmp_path: Path,
) -> None:
    # pypdf gave the cover's "יעל $mith ..." as "יעל$ mith ...": the space moved to the run's other side
    # (the fixture's PDF fonts have no Hebrew, so Latin letters stand in for the right-to-left run)
    name = "Yael $mith \\frac{1}{2} 50%"
    extracted = "Name 123456782 Yael$ mith \\frac{1}{2} 50% b+hw3@campus.technion.ac.il"
    zip_path = submission_zip(tmp_path, pages=good_pdf_pages(extra=[extracted]))
    assert validate_zip(zip_path, literal_text=[name]).ok
    assert failed_titles(validate_zip(zip_path)) == [
        "equations rendered (no raw $ or LaTeX commands in the text)"
    ]
