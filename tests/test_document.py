"""The document a grader reads, on a real quick build: the PDF's structure (page budget, Task 1's page, the
answer index's links, support code only in the appendix, nothing wrapped, no local paths, no tool names)
and the notebook beside it (support cells collapsed, the tasks in order, no local paths in what it prints).

The full profile differs from the quick one only by longer training logs and real numbers (three epochs of
2,929 batches with a log line every 200: about 45 lines, at most a page more), so the quick bounds below are the
full profile's budget (25 pages, Task 1 by page 10) minus that margin.
"""

from __future__ import annotations

import io
import re
import subprocess
import zipfile

import nbformat
import pytest
from hw3build.submission.assignment import TASKS
from pypdf import PdfReader

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.tex]

# The full build of 6 Dec 2026 is 23 pages (the quick one 23 too): Task 4 shows the train() that trains,
# with its recipe, and the check of its loss line; every hidden cell leaves a line where it ran.
FULL_PAGE_BUDGET = 25
FULL_PROFILE_EXTRA_PAGES = 1  # the full profile's longer training logs, less what the page breaks absorb
TASK1_BY_PAGE = 10
CONTINUATION_MARKERS = ("↪", "␣")  # nbconvert's marks of a code line broken to fit
LOCAL_PATH = re.compile(r"(?<![\w.~])(?:/(?:home|work|tmp|root|Users|usr|var|mnt|opt)/|[A-Za-z]:\\\\)")
TOOL_NAMES = re.compile(r"\b(?:papermill|nbconvert|invoke|hw3build|pytest|ruff)\b", re.I)
SUPPORT_DEFINITIONS = ("def wikitext2_dir", "class HParams", "def chunk_starts", "class LinearCrossEntropy")


@pytest.fixture(scope="module")
def pdf_pages(quick_build) -> list[str]:
    """The PDF's text page by page, as a grader's viewer extracts it (poppler's pdftotext)."""
    with zipfile.ZipFile(quick_build.zip_path) as zf:
        pdf = next(name for name in zf.namelist() if name.endswith(".pdf"))
        data = zf.read(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


@pytest.fixture(scope="module")
def reader(quick_build) -> PdfReader:
    with zipfile.ZipFile(quick_build.zip_path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".pdf"))
        return PdfReader(io.BytesIO(zf.read(name)))


@pytest.fixture(scope="module")
def notebook(quick_build) -> nbformat.NotebookNode:
    with zipfile.ZipFile(quick_build.zip_path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".ipynb"))
        return nbformat.reads(zf.read(name).decode("utf-8"), as_version=4)


def appendix_start(pages: list[str]) -> int:
    return next(i for i, page in enumerate(pages) if "B. Support code" in page)


def test_the_page_budget_and_task1_page(pdf_pages, reader) -> None:
    assert len(pdf_pages) == len(reader.pages)
    assert len(pdf_pages) <= FULL_PAGE_BUDGET - FULL_PROFILE_EXTRA_PAGES, len(pdf_pages)
    task1 = next(i for i, page in enumerate(pdf_pages) if TASKS[0].text in page and i > 1) + 1
    assert task1 <= TASK1_BY_PAGE, task1


def test_every_answer_index_link_resolves_to_its_answer(reader, pdf_pages) -> None:
    named = reader.named_destinations
    rows = 0
    for annotation in reader.pages[1].get("/Annots", []):
        annotation = annotation.get_object()
        if annotation.get("/Subtype") != "/Link":
            continue
        destination = annotation["/A"]["/D"]
        page = reader.get_destination_page_number(named[str(destination)])
        assert 1 < page < len(reader.pages), destination
        rows += 1
    assert rows >= 13 * 3  # the key, the question and the page of every row are links
    # the task rows name the pages of their answer cells: T1's shows Task 1's printed shape
    t1 = re.search(r"^\s*T1\s.*?\s(\d+)\s*$", pdf_pages[1], re.M)
    assert t1 and "train_data.shape" in pdf_pages[int(t1.group(1)) - 1]


# What each task's answer cell prints first: the index's link must land on the page that shows it.
TASK_RESULTS = {
    "ans:t1": "train_data.shape = (",
    "ans:t2": "data.shape = (2, 20)",
    "ans:t3": "ntokens = 28782",
    "ans:t4": "| End of training | test loss",
    "ans:t5": "1. ",
}


def test_each_task_link_lands_on_the_page_of_its_result(pdf_pages) -> None:
    """The index's page for each task (\\pageref of the label its link targets) shows the result itself,
    not only the code that prints it."""
    for label, result in TASK_RESULTS.items():
        key = label.removeprefix("ans:").upper()
        row = re.search(rf"^\s*{key}\s.*?\s(\d+)\s*$", pdf_pages[1], re.M)
        assert row, key
        page = int(row.group(1))
        assert result in pdf_pages[page - 1], (key, page)


def test_every_notebook_cell_number_shows_in_part2_without_gaps(pdf_pages) -> None:
    """Support cells and the given model leave a line where they ran: In [1], In [2], ... with no gap."""
    part2 = next(i for i, page in enumerate(pdf_pages) if "Part 2 - Code Assignments" in page and i > 1)
    text = "\n".join(pdf_pages[part2 : appendix_start(pdf_pages)])
    numbers = sorted({int(n) for n in re.findall(r"(?m)^\s*(?:In )?\[(\d+)\]:", text)})
    assert numbers == list(range(1, numbers[-1] + 1)), numbers
    assert len(re.findall(r"support\s+code\s+in\s+the\s+notebook\s+\(appendix\s+B\)", text)) >= 5
    assert "PositionalEncoding and TransformerModel — the assignment’s code, unchanged" in text


def test_support_code_only_in_the_appendix(pdf_pages) -> None:
    start = appendix_start(pdf_pages)
    for page_number, page in enumerate(pdf_pages[:start], start=1):
        for definition in SUPPORT_DEFINITIONS:
            assert definition not in page, (definition, page_number)
    appendix = "\n".join(pdf_pages[start:])
    assert "The torchtext replacement" in appendix and "checked against the assignment" in appendix
    assert len(pdf_pages) - start <= 3  # the appendix, Part 1's check tables included: at most three pages


def test_nothing_wraps_no_local_paths_no_tool_names(pdf_pages) -> None:
    text = "\n".join(pdf_pages)
    for marker in CONTINUATION_MARKERS:
        assert marker not in text, marker
    assert not LOCAL_PATH.search(text), LOCAL_PATH.search(text)
    graded = "\n".join(pdf_pages[: appendix_start(pdf_pages)])
    assert not TOOL_NAMES.search(graded), TOOL_NAMES.search(graded)
    for forbidden in ("noqa", "fmt: skip", "Built by"):
        assert forbidden not in graded, forbidden
    assert not re.search(r"\bCheck\b.{0,300}\bpassed\b", graded, re.S)  # no "Check ... passed" boxes


def test_the_notebook_collapses_support_code_and_prints_no_local_paths(notebook) -> None:
    support = [c for c in notebook.cells if "support" in c.metadata.get("tags", [])]
    assert support and all(
        c.metadata.get("jupyter", {}).get("source_hidden") for c in support if c.cell_type == "code"
    )
    headings = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown" and c.source]
    assert [h.lstrip("# ") for h in headings if h.lstrip("# ").startswith("Task")] == [t.text for t in TASKS]
    printed = [
        output.get("text", "") + "".join(str(v) for v in output.get("data", {}).values())
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    for text in printed:
        assert not LOCAL_PATH.search(text), LOCAL_PATH.search(text)
