"""What a grader wants at a glance, read from a submission's notebook and PDF text.

Submissions print things their own way: every fact is found by a tolerant pattern and is None when it
cannot be found (shown as "not found", never guessed). Where each pattern comes from: docs/grading.md.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import nbformat
from hw3.hparams import BOX, OPTIMIZERS, Bounds
from hw3build.submission.assignment import HEADINGS, QUESTION_PARTS, TASKS

ID = re.compile(r"(?<!\d)(\d{9})(?!\d)")
NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
# Task 3's printed hyper-parameters: the field's name (or the words our describe() prints), then a value.
HPARAM_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"(?im)^[^\n]*?\b(?:{words})\b[^\n\d=:]*[=:]?\s*{NUMBER}")
    for name, words in (
        ("emsize", r"emsize|embedding size|embedding dim(?:ension)?"),
        ("nhid", r"nhid|hidden units|hidden size|d_hid"),
        ("nlayers", r"nlayers|encoder layers|number of layers"),
        ("nhead", r"nhead|attention heads|number of heads"),
        ("dropout", r"dropout"),
        ("lr", r"lr|learning rate(?: \(peak\))?"),
    )
}
OPTIMIZER = re.compile(rf"(?im)^[^\n]*\boptimi[sz]er\b[^\n]*?\b({'|'.join(OPTIMIZERS)})\b")
VALID_PPL = re.compile(rf"(?i)\bval(?:id(?:ation)?)?\.?[ _](?:ppl|perplexity)\b\s*[=:|]?\s*{NUMBER}")
TEST_PPL = re.compile(rf"(?i)\btest[ _](?:ppl|perplexity)\b\s*[=:|]?\s*{NUMBER}")
DRAFT = re.compile(r"\bDRAFT\b")


@dataclass
class Facts:
    students: list[dict[str, str]] = field(default_factory=list)  # name (may be empty) and id
    hparams: dict[str, Any] = field(default_factory=dict)
    hparams_out_of_range: list[str] = field(default_factory=list)
    valid_curve: list[float] = field(default_factory=list)
    test_ppl: float | None = None
    draft: bool | None = None
    pdf_pages: int | None = None
    answer_pages: dict[str, int] = field(default_factory=dict)  # "Q1.1" / "T4" -> 1-based page
    answer_cells: dict[str, int] = field(default_factory=dict)  # "T4" -> notebook cell index
    run_seconds: float | None = None  # the notebook's own execution, as papermill recorded it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gather(nb: nbformat.NotebookNode | None, pages: list[str] | None, profile: str | None = None) -> Facts:
    facts = Facts()
    if nb is not None:
        facts.students = students_from_notebook(nb)
        sections = task_sections(nb)
        facts.answer_cells = task_headings(nb)
        task3 = "\n".join(output_text(nb.cells[i]) for i in sections.get("T3", []))
        facts.hparams = hparams_from_text(task3 or notebook_output_text(nb))
        facts.hparams_out_of_range = out_of_range(facts.hparams)
        task4 = "\n".join(output_text(nb.cells[i]) for i in sections.get("T4", [])) or notebook_output_text(
            nb
        )
        facts.valid_curve = [float(m) for m in VALID_PPL.findall(task4)]
        tests = TEST_PPL.findall(task4)
        facts.test_ppl = float(tests[-1]) if tests else None
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        facts.draft = bool(DRAFT.search(markdown)) or (profile is not None and profile != "full")
    if pages is not None:
        facts.pdf_pages = len(pages)
        if not facts.students and pages:
            facts.students = [{"name": "", "id": i} for i in dict.fromkeys(ID.findall(pages[0]))]
        facts.answer_pages = answer_pages(pages)
        if pages and DRAFT.search(pages[0]):
            facts.draft = True
    return facts


def students_from_notebook(nb: nbformat.NotebookNode) -> list[dict[str, str]]:
    """The rows of a Markdown table that hold a 9-digit ID: the first cell is the name."""
    students = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.strip().startswith("|") and ID.search(line):
                columns = [c.strip() for c in line.strip().strip("|").split("|")]
                ids = [m for c in columns for m in ID.findall(c)]
                students.append(
                    {"name": re.sub(r"\*\*\(PLACEHOLDER\)\*\*", "", columns[0]).strip(), "id": ids[0]}
                )
    return students


def output_text(cell: nbformat.NotebookNode) -> str:
    """The text a code cell printed or returned (streams and text/plain)."""
    parts = []
    for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
        text = (
            output.get("text")
            if output.get("output_type") == "stream"
            else output.get("data", {}).get("text/plain")
        )
        if isinstance(text, list):
            text = "".join(str(t) for t in text)
        if isinstance(text, str):
            parts.append(text.rsplit("\r", 1)[-1] if "\r" in text and "\n" not in text else text)
    return "\n".join(parts)


def notebook_output_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(output_text(cell) for cell in nb.cells)


def task_sections(nb: nbformat.NotebookNode) -> dict[str, list[int]]:
    """The code cells under each task's heading ("Task 3" ... up to the next task's), by index."""
    sections: dict[str, list[int]] = {}
    current = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for task in TASKS:
                if re.search(rf"(?im)^#+.*\b{task.label}\b", cell.source):
                    current = task.short
                    sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(index)
    return sections


def task_headings(nb: nbformat.NotebookNode) -> dict[str, int]:
    """The index of the Markdown cell that opens each task (the first that names it in a heading)."""
    found: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for task in TASKS:
                if task.short not in found and re.search(rf"(?im)^#+.*\b{task.label}\b", cell.source):
                    found[task.short] = index
    return found


def hparams_from_text(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, pattern in HPARAM_PATTERNS.items():
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            found[name] = int(value) if value.is_integer() and name != "lr" and name != "dropout" else value
    match = OPTIMIZER.search(text)
    if match:
        found["optimizer"] = match.group(1)
    return found


def out_of_range(hparams: dict[str, Any]) -> list[str]:
    """The found values outside the assignment's box (hw3.hparams.BOX), as "name=value (low-high)"."""
    bad = []
    for name, value in hparams.items():
        box = BOX.get(name)
        if isinstance(box, Bounds) and not box.low <= value <= box.high:
            bad.append(f"{name}={value:g} (allowed {box.low:g}-{box.high:g})")
        elif isinstance(box, tuple) and value not in box:
            bad.append(f"{name}={value} (allowed {', '.join(map(str, box))})")
    return bad


def _flatten(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def answer_pages(pages: list[str]) -> dict[str, int]:
    """The 1-based page of each question part and task: a heading's page is where its label and title
    first appear; a part ("1.1") is the first page from its question's heading on where a line starts
    with it."""
    flat = [_flatten(page) for page in pages]
    found: dict[str, int] = {}
    heading_page: dict[str, int] = {}
    for heading in HEADINGS:
        target = _flatten(heading.label + heading.title)
        page = next((n for n, text in enumerate(flat) if target in text), None)
        if page is not None:
            heading_page[heading.label] = page
            if heading.label.startswith("Task"):
                found[heading.short] = page + 1
    for key, _ in QUESTION_PARTS:
        number = key[1:]
        question = f"Question {number.split('.')[0]}"
        start = heading_page.get(question)
        if start is None:
            continue
        if "." not in number:
            found[key.upper()] = start + 1
            continue
        line_start = re.compile(rf"(?m)^\W*(?:Q(?:uestion)?\s*)?{re.escape(number)}(?!\d)")
        page = next((n for n in range(start, len(pages)) if line_start.search(pages[n])), None)
        if page is not None:
            found[key.upper()] = page + 1
    return found
