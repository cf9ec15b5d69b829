"""Check a submission zip against the course's rules and print a checklist.

``python -m hw3build.submission.validate ZIP [--strict]`` (or ``invoke validate``) exits non-zero when a rule fails.
The rules: the zip and its two members are named after the two IDs; the notebook is valid, every code cell
ran, in order, without errors, with the outputs its prints produce and the figures it draws; the PDF opens,
contains every question and task heading and shows rendered equations (no raw ``$`` or ``\\frac``).
``--strict`` also refuses the assignment's placeholder students and IDs with a wrong check digit (a zip
made for upload). Every file is read within limits (hw3build.submission.bounded, docs/grading.md): a broken or hostile
zip fails a rule, it never crashes the check.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from hw3build.draft import draft_reasons
from hw3build.notebook.schema import ParameterError, is_parameters_cell, parameter_values
from hw3build.submission.assignment import HEADINGS as ASSIGNMENT_HEADINGS
from hw3build.submission.assignment import ZIP_NAME, submission_members
from hw3build.submission.bounded import (
    DEFAULT_LIMITS,
    LimitExceeded,
    Limits,
    Unreadable,
    papermill_metadata,
    read_notebook,
    read_pdf_pages,
    read_zip,
)
from hw3build.submission.config import (
    PLACEHOLDER_EMAILS,
    PLACEHOLDER_IDS,
    ConfigError,
    israeli_id_valid,
    load_config,
)

# The assignment's headings, in its order: (accepted labels, title). The PDF must show each title right after
# one of its labels (e.g. "Question 1 - Transformers Efficiency", "Q1 Transformers Efficiency");
# punctuation, spacing and line breaks are ignored when matching.
HEADINGS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    ((h.label, h.short) if h.short else (h.label,), h.title) for h in ASSIGNMENT_HEADINGS
)
# LaTeX that should never survive into the PDF's text: it means an equation was printed instead of typeset.
RAW_LATEX = re.compile(
    r"\$|\\(?:frac|sqrt|mathbb|mathrm|mathcal|text|left|right|sum|partial|cdot|begin|end)\b"
)

# What the notebook and the report print above placeholder students (templates/notebook, templates/report).
PLACEHOLDER_MARKER = "placeholder student details"
OK, FAIL, WARN = "ok", "fail", "warn"
# The calls that draw a figure in a notebook (matplotlib's and the homework's plot_* helpers).
FIGURE_CALL = re.compile(r"^(plot\w*|\w*plot|show|imshow|hist|scatter|bar|figure|subplots)$")
_SYMBOLS = {OK: ("\u2713", "[ok]  "), FAIL: ("\u2717", "[FAIL]"), WARN: ("!", "[warn]")}


@dataclass(frozen=True)
class Check:
    status: str  # ok | fail | warn
    title: str
    detail: str = ""


@dataclass
class ValidationReport:
    """The checklist of one zip; ``ok`` is False when any check failed (warnings do not fail)."""

    zip_path: Path
    strict: bool = False
    checks: list[Check] = field(default_factory=list)
    # what was read, for a caller that reports more than the rules (hw3grade)
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)
    pdf_pages: list[str] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    def add(self, status: str, title: str, detail: str = "") -> None:
        self.checks.append(Check(status, title, detail))

    def expect(self, condition: bool, title: str, detail_if_failed: str = "") -> bool:
        self.add(OK if condition else FAIL, title, "" if condition else detail_if_failed)
        return condition

    def format(self, unicode: bool | None = None) -> str:
        """The checklist; ``unicode=None`` uses ✓/✗ when stdout can encode them, else [ok]/[FAIL]."""
        if unicode is None:
            unicode = _can_encode("\u2713\u2717")
        mode = "strict" if self.strict else "standard"
        lines = [f"Validating {self.zip_path} ({mode} rules)"]
        for check in self.checks:
            symbol = _SYMBOLS[check.status][0 if unicode else 1]
            lines.append(f"  {symbol} {check.title}" + (f": {check.detail}" if check.detail else ""))
        verdict = "PASSED" if self.ok else f"FAILED ({len(self.failures)} rule(s) broken)"
        if self.ok and self.warnings:
            verdict += f" with {len(self.warnings)} warning(s)"
        lines.append(verdict)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def validate_zip(
    zip_path: str | Path,
    strict: bool = False,
    literal_text: Iterable[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    data: bytes | None = None,
) -> ValidationReport:
    """Check every submission rule on ``zip_path``; never raises for a bad submission (see the report).

    ``literal_text``: text the PDF prints as typed, never as markup (the students' names: a name may hold
    a ``$``), left out of the raw-LaTeX check. ``data``: the zip's bytes, when it was read from elsewhere
    (``zip_path`` then only names it). Everything is read within ``limits`` (hw3build.submission.bounded).
    """
    zip_path = Path(zip_path)
    report = ValidationReport(zip_path=zip_path, strict=strict)
    match = ZIP_NAME.match(zip_path.name)
    if not report.expect(
        bool(match), "zip named ece046211_hw3_<id1>_<id2>.zip", f"got {zip_path.name!r} (IDs are 9 digits)"
    ):
        return report
    id1, id2 = match.group(1), match.group(2)
    report.expect(id1 != id2, "two different student IDs", f"both are {id1}")
    _check_ids(report, (id1, id2), strict)

    expected = list(submission_members(id1, id2))
    try:  # only the two expected members are inflated: the others are judged by their names
        members, contents = read_zip(zip_path if data is None else data, expected, limits)
    except (Unreadable, LimitExceeded) as exc:
        report.add(FAIL, "zip opens", str(exc))
        return report
    report.add(OK, "zip opens")
    names = [member.name for member in members]
    report.expect(
        sorted(names) == sorted(expected),
        "exactly two files, the .ipynb and the .pdf, named after the IDs",
        f"expected {expected}, found {names}",
    )
    check_files(report, expected, contents, strict, literal_text, limits)
    return report


def check_files(
    report: ValidationReport,
    expected: list[str],
    contents: dict[str, bytes],
    strict: bool = False,
    literal_text: Iterable[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """The notebook's and the PDF's rules on ``contents`` (name -> bytes) for the ``expected`` pair of
    names, each checked when present, and the placeholder rule on both."""
    notebook_bytes, pdf_bytes = contents.get(expected[0]), contents.get(expected[1])
    notebook_text = (
        _check_notebook(report, notebook_bytes, expected[0], strict, limits)
        if notebook_bytes is not None
        else ""
    )
    printed = _printed_by_the_run(notebook_bytes) if notebook_bytes is not None else ""
    pdf_text = (
        _check_pdf(report, pdf_bytes, expected[1], tuple(literal_text), printed, limits)
        if pdf_bytes is not None
        else ""
    )
    _check_placeholder_text(report, notebook_text + "\n" + pdf_text, strict)


def _check_ids(report: ValidationReport, ids: tuple[str, str], strict: bool) -> None:
    for id_number in ids:
        if id_number in PLACEHOLDER_IDS:
            report.add(
                FAIL if strict else WARN,
                f"ID {id_number} is a real student ID",
                f"{id_number} is the assignment's example ID; put your IDs in submission.toml",
            )
        else:
            report.expect(israeli_id_valid(id_number), f"ID {id_number} has a valid check digit", "a typo?")


def _check_notebook(
    report: ValidationReport, data: bytes, name: str, strict: bool, limits: Limits = DEFAULT_LIMITS
) -> str:
    """Notebook rules; returns the markdown text (for the placeholder check)."""
    try:
        nb = read_notebook(data, limits)
    except (Unreadable, LimitExceeded) as exc:
        report.add(FAIL, f"{name} is a valid notebook", str(exc))
        return ""
    report.notebook = nb
    report.add(OK, f"{name} is a valid notebook")

    code_cells = [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    unexecuted = [i for i, cell in code_cells if cell.source.strip() and cell.get("execution_count") is None]
    report.expect(
        bool(code_cells) and not unexecuted,
        "every code cell was executed",
        f"cells {unexecuted} have no execution count" if unexecuted else "the notebook has no code cells",
    )
    counts = [(i, cell.execution_count) for i, cell in code_cells if cell.get("execution_count") is not None]
    out_of_order = [i for (_, prev), (i, count) in zip(counts, counts[1:], strict=False) if count <= prev]
    report.expect(
        not out_of_order,
        "execution counts strictly increase top to bottom",
        f"out of order at cells {out_of_order}",
    )
    errors = [
        f"cell {i} ({output.get('ename', 'error')})"
        for i, cell in code_cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    report.expect(not errors, "no error outputs", ", ".join(errors))
    silent = [i for i, cell in code_cells if _prints_at_top_level(cell.source) and not cell.get("outputs")]
    has_outputs = any(cell.get("outputs") for _, cell in code_cells)
    report.expect(
        has_outputs and not silent,
        "cells that print have their outputs saved",
        f"cells {silent} print but have no output" if silent else "no code cell has any output",
    )
    _check_figures(report, code_cells)
    papermill, malformed = papermill_metadata(nb)
    report.expect(not malformed, "papermill metadata well-formed", "; ".join(malformed))
    exception = papermill.get("exception")
    report.expect(not exception, "papermill recorded no exception", "metadata.papermill.exception is set")
    # what ran: the parameters cell's values, overridden by those papermill injected (only what differs)
    # (unknown when papermill's record is malformed: that fails its own rule above)
    parameters = {} if malformed else {**_parameters_cell_values(nb), **papermill["parameters"]}
    if parameters.get("profile") is not None:  # known for notebooks of this project
        reasons = draft_reasons(parameters["profile"], parameters)
        title = "trained as the full profile does (not a DRAFT)"
        if not reasons:
            report.add(OK, title)
        else:
            report.add(
                FAIL if strict else WARN,
                title,
                f"a DRAFT: {'; '.join(reasons)}; rebuild with `invoke build --profile full` "
                "and no max_*_batches or fewer epochs in [hparams]",
            )
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def _parameters_cell_values(nb: nbformat.NotebookNode) -> dict:
    """The ``name = literal`` values of the notebook's parameters cell ({} when it has none, or holds
    anything else: another tool's notebook)."""
    cell = next((c for c in nb.cells if is_parameters_cell(c)), None)
    try:
        return parameter_values(cell.source) if cell is not None else {}
    except (ParameterError, RecursionError, MemoryError):
        return {}


def _prints_at_top_level(source: str) -> bool:
    """Whether the cell calls print() outside a def/class body (so running it must produce output)."""
    # Drop IPython magics and shell escapes, which are not Python.
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))]
    return any(name == "print" for name in _top_level_calls(lines))


def _top_level_calls(lines: list[str]) -> list[str]:
    """The names of the functions and methods called outside a def/class body (none when the cell does not
    parse, or is too deep to parse)."""
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    called = []
    pending: list[ast.AST] = list(tree.body)
    while pending:  # an explicit stack: a deep expression cannot overflow it
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                called.append(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                called.append(node.func.attr)
        pending.extend(ast.iter_child_nodes(node))
    return called


def _shows_a_figure(source: str) -> bool:
    """Whether the cell's top-level code draws a figure (a call named plot_*, *plot, show, imshow...)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))]
    return any(FIGURE_CALL.search(name) for name in _top_level_calls(lines))


def _check_figures(report: ValidationReport, code_cells: list[tuple[int, nbformat.NotebookNode]]) -> None:
    """Cells that draw a figure must keep an image output; a notebook whose figures were stripped (or
    whose outputs were all stripped but the prints') fails."""
    missing = [
        i
        for i, cell in code_cells
        if _shows_a_figure(cell.source)
        and not any(
            key.startswith("image/") for output in cell.get("outputs", []) for key in output.get("data", {})
        )
    ]
    report.expect(
        not missing,
        "figure outputs saved",
        f"cells {missing} draw a figure but have no image output (save the notebook with its outputs)",
    )


def _check_pdf(
    report: ValidationReport,
    data: bytes,
    name: str,
    literal_text: tuple[str, ...] = (),
    printed: str = "",
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """PDF rules; returns the extracted text. ``printed``: what the run printed (:func:`_printed_by_the_run`),
    literal text wherever the PDF shows it."""
    try:
        pages = read_pdf_pages(data, limits)
    except (Unreadable, LimitExceeded) as exc:
        report.add(FAIL, f"{name} opens", str(exc))
        return ""
    report.pdf_pages = pages
    if not pages:
        report.add(FAIL, f"{name} opens", "it has no pages")
        return ""
    report.add(OK, f"{name} opens", f"{len(pages)} pages")
    text = "\n".join(pages)

    flat = _flatten(text)
    positions, missing = [], []
    for labels, title in HEADINGS:
        found = [flat.find(_flatten(label + title)) for label in labels]
        found = [p for p in found if p >= 0]
        if found:
            positions.append(min(found))
        else:
            missing.append(f"{labels[0]} - {title}")
    if report.expect(
        not missing, "every question and task heading is in the PDF", "missing: " + "; ".join(missing)
    ):
        report.expect(
            positions == sorted(positions),
            "headings in the assignment's order",
            "Questions 1-3 then Tasks 1-5 expected",
        )
    markup = _without_literal_text(text, literal_text)
    typed = _literal_spans(markup, literal_text)
    raw = [
        _context(markup, m.start())
        for m in RAW_LATEX.finditer(markup)
        if not _in_printed_text(markup, m, printed) and not any(a <= m.start() <= b for a, b in typed)
    ]
    report.expect(
        not raw,
        "equations rendered (no raw $ or LaTeX commands in the text)",
        f"{len(raw)} found, first: " + " | ".join(raw[:3]),
    )
    return text


def _check_placeholder_text(report: ValidationReport, text: str, strict: bool) -> None:
    # The e-mails and the build's own marker; not the names: "Student 1" may label a row of a table.
    found = sorted(value for value in (*PLACEHOLDER_EMAILS, PLACEHOLDER_MARKER) if value in text.lower())
    if found:
        report.add(
            FAIL if strict else WARN,
            "no placeholder student data in the notebook or PDF",
            f"found {', '.join(found)}; edit submission.toml and rebuild",
        )
    else:
        report.add(OK, "no placeholder student data in the notebook or PDF")


def _compact(text: str) -> str:
    """``text`` as compared with what the run printed: no whitespace (the PDF wraps lines where the notebook
    does not), ligatures expanded, TeX's typographic quotes read back as typed."""
    text = unicodedata.normalize("NFKC", text).translate(_TEX_QUOTES)
    return "".join(text.split())


_TEX_QUOTES = {0x2019: "'", 0x2018: "`", 0x201D: "''", 0x201C: "``"}
PRINTED_CONTEXT = 10  # characters around a $ or command that must match what the run printed


def _printed_by_the_run(notebook: bytes) -> str:
    """Every output the notebook's code printed (streams and plain-text results), :func:`_compact`-ed: the
    run's text (sampled sentences, the data's words), which may hold ``$`` or backslashes as plain text."""
    try:
        nb = nbformat.reads(notebook.decode("utf-8"), as_version=4)
    except Exception:  # a broken notebook fails its own check; nothing is exempt then
        return ""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = output.get("text") if output.get("output_type") == "stream" else None
            text = text if text is not None else output.get("data", {}).get("text/plain", "")
            texts.append(text if isinstance(text, str) else "".join(text))
    return _compact("\n".join(texts))


def _literal_spans(text: str, literal_text: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where in ``text`` each literal string (a student's name) is, compared :func:`_compact`-ed: a PDF's
    text may move a space at the edge of a right-to-left run, or wrap a long name."""
    compact, origin = [], []
    for index, char in enumerate(text):
        for part in _compact(char):
            compact.append(part)
            origin.append(index)
    joined = "".join(compact)
    spans = []
    for literal in literal_text:
        wanted = _compact(literal)
        start = joined.find(wanted) if wanted else -1
        while start >= 0:
            spans.append((origin[start], origin[start + len(wanted) - 1]))
            start = joined.find(wanted, start + 1)
    return spans


def _in_printed_text(text: str, match: re.Match[str], printed: str) -> bool:
    """Whether ``match`` (a ``$`` or a command in the PDF's text) is part of what the run printed: the
    characters before or after it, read together with it, occur in the run's output."""
    if not printed:
        return False
    token = _compact(match.group())
    before = _compact(text[max(0, match.start() - 4 * PRINTED_CONTEXT) : match.start()])[-PRINTED_CONTEXT:]
    after = _compact(text[match.end() : match.end() + 4 * PRINTED_CONTEXT])[:PRINTED_CONTEXT]
    least = PRINTED_CONTEXT // 2  # a lone "$" is in any output that prints one: some context must match
    return (len(before) >= least and before + token in printed) or (
        len(after) >= least and token + after in printed
    )


def _without_literal_text(text: str, literal_text: tuple[str, ...]) -> str:
    """``text`` (whitespace collapsed) with every occurrence of each literal string taken out."""
    text = " ".join(text.split())
    for literal in literal_text:
        for form in {literal, literal.replace("'", "\u2019").replace("`", "\u2018")}:  # TeX's quotes
            text = text.replace(" ".join(form.split()), " ")
    return text


def _flatten(text: str) -> str:
    """Lower-case letters and digits only (ligatures expanded), so layout and punctuation do not matter."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _context(text: str, position: int, width: int = 30) -> str:
    return " ".join(text[max(0, position - width) : position + width].split())


def _can_encode(chars: str) -> bool:
    try:
        chars.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def find_zip(dist_dir: str | Path) -> Path:
    """The submission zip in ``dist_dir`` (the newest, if several)."""
    zips = sorted(Path(dist_dir).glob("ece046211_hw3_*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise FileNotFoundError(f"no ece046211_hw3_*.zip in {dist_dir}: run `invoke build` first")
    return zips[-1]


def _student_names(config_path: Path) -> tuple[str, ...]:
    """The names in ``config_path`` (none when it is absent or invalid: the check is then stricter)."""
    if not config_path.is_file():
        return ()
    try:
        return tuple(student.name for student in load_config(config_path).students)
    except ConfigError as exc:
        print(f"warning: {exc}; the names are checked as any other text of the PDF", file=sys.stderr)
        return ()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw3build validate", description=__doc__.splitlines()[0])
    parser.add_argument("zip", nargs="?", help="the zip (default: the one in build/dist)")
    parser.add_argument("--strict", action="store_true", help="also refuse placeholder students and bad IDs")
    parser.add_argument("--dist-dir", default="build/dist", help="where to look when ZIP is not given")
    parser.add_argument(
        "--config",
        default="submission.toml",
        help="the students' names, printed as typed (if the file exists)",
    )
    args = parser.parse_args(argv)
    try:
        zip_path = Path(args.zip) if args.zip else find_zip(args.dist_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not zip_path.is_file():
        print(f"error: {zip_path} does not exist", file=sys.stderr)
        return 2
    report = validate_zip(zip_path, strict=args.strict, literal_text=_student_names(Path(args.config)))
    print(report.format())
    return 0 if report.ok else 1
