"""The executed notebook as LaTeX for Part 2 of the report: nbconvert's LaTeX exporter with our template
(``templates/report/notebook.tex.j2``), after a pipeline of preprocessors run the way nbconvert runs its
own (each ``nb, resources = preprocessor(nb, resources)``), in this order:

1. :class:`DropFrontMatter`: the cells before the "Part 2" heading (title, students, the Part 1 line) and
   the heading itself: the report has its own cover and part headings;
2. :class:`CellMarkers`: each support code cell, and the given code printed unchanged, becomes one line
   where it ran (its number, what it does, where its code is), so the cell numbers have no silent gaps;
   the support markdown cells go (the report's appendix lists the support cells);
3. nbconvert's ``CoalesceStreamsPreprocessor``: consecutive stream outputs merged, progress-bar frames
   (``\\r``) collapsed to their last state;
4. :class:`PrintableOutputs`: HTML, JavaScript, widget and SVG outputs dropped where a printable form
   exists (they never reach LaTeX);
5. :class:`CleanOutputText`: terminal cursor codes and stray control bytes dropped (colours kept),
   characters no font has replaced, lines wrapped at :data:`CODE_COLUMNS` display columns;
6. :class:`KeepTogether`: each code cell's height in lines, so that the template keeps a cell and its
   output on one page where they fit;
7. :class:`MarkdownForPrint`: headings shifted so that "Task N" headings are sections like the theory
   questions, remote images dropped, inline math tightened so pandoc keeps it.

Papermill's injected-parameters cell is printed as papermill leaves it: it says what ran.

The exporter's output is split into the definitions (for the preamble) and the body (for the document).
"""

from __future__ import annotations

import ast
import copy
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat
from hw3tools.repo import TEMPLATES_DIR
from nbconvert.exporters import LatexExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor, Preprocessor
from traitlets import Any as AnyTrait

from hw3build.notebook.schema import (
    GIVEN_TAG,
    SUPPORT_TAG,
    cell_answer_keys,
    has_tag,
)
from hw3build.report.latex import STRAIGHT_DOUBLE_QUOTE, ReportError
from hw3build.report.support_index import opening_comment

TEMPLATE_DIR = TEMPLATES_DIR / "report"
NOTEBOOK_TEMPLATE = "notebook.tex.j2"
FIGURES_DIR = "nbfigs"
BODY_MARKER = "%% ==== hw3 notebook body ===="
END_MARKER = "%% ==== hw3 notebook end ===="
# Columns of code and printed text that fit the report's code width (DejaVu Sans Mono at the template's
# size fits ~108): the notebook's code is written to this width (code/hw3 has ruff's 100-column limit).
CODE_COLUMNS = 100
# Lines of the report's 11-point text that a line of code or printed text takes (footnotesize
# Verbatim), the frame around a cell, and a figure (a page holds about 64 lines of code).
CODE_LINE_HEIGHT = 0.8
CELL_FRAME_LINES = 3
FIGURE_LINES = 18

_CSI = re.compile(r"\x1b\[[0-9;?]*([@-~])")  # terminal control sequences; SGR ('m') ones are colours
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_HTML_IMG = re.compile(r"<img\b[^>]*>", re.I)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)\$(?!\$)")
_CODE_SPAN = re.compile(r"(`+[^`]*`+)")
_TASK_HEADING = re.compile(r"^Task\s*\d", re.I)
_PART2_HEADING = re.compile(r"^Part\s*2\b", re.I)
# A highlighted code line whose comment starts with "# completed": the students' filled-in lines.
_COMPLETED_LINE = re.compile(r"^( *)((?:\S.*)?\\PY\{c\+c1\}\{\\PYZsh\{\} completed.*)$", re.M)


# ----------------------------------------------------------------------------------------- text helpers


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: East Asian wide characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def wrap_columns(text: str, columns: int = CODE_COLUMNS) -> str:
    """Each line longer than ``columns`` display columns broken at spaces (inside a word if it must)."""
    out = []
    for line in text.split("\n"):
        while display_width(line) > columns:
            cut = _fitting_prefix(line, columns)
            space = line.rfind(" ", 0, cut + 1)
            cut = space if space > 0 else cut
            out.append(line[:cut].rstrip())
            line = line[cut:].lstrip(" ")
        out.append(line)
    return "\n".join(out)


def _fitting_prefix(line: str, columns: int) -> int:
    width = 0
    for index, char in enumerate(line):
        width += display_width(char)
        if width > columns:
            return index
    return len(line)


def collapse_carriage_returns(text: str) -> str:
    """Keep what a terminal would show: on each line, the text after the last carriage return."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            frames = [frame for frame in line.split("\r") if frame]
            line = frames[-1] if frames else ""
        lines.append(line)
    return "\n".join(lines)


def clean_stream_text(text: str) -> str:
    """Collapse progress frames, drop cursor-movement codes (keep colours) and stray control bytes."""
    text = _CSI.sub(lambda m: m.group(0) if m.group(1) == "m" else "", text)
    return _CONTROL.sub("", collapse_carriage_returns(text))


def tighten_inline_math(text: str) -> str:
    """``$ x $`` -> ``$x$``: pandoc only reads math whose delimiters touch the formula. Inline code spans
    (between backticks) are left alone."""
    parts = _CODE_SPAN.split(text)
    for index in range(0, len(parts), 2):  # even parts are outside code spans
        parts[index] = _INLINE_MATH.sub(
            lambda m: "$" + m.group(1).strip() + "$" if m.group(1).strip() else m.group(0), parts[index]
        )
    return "".join(parts)


def straight_double_quotes(latex: str) -> str:
    """Pandoc's LaTeX for a Markdown cell with each bare ``"`` as ``\\textquotedbl{}``. Pandoc writes a
    quotation it recognises as ````...''`` and an escaped double quote (``\\"``: a name as typed, a
    generated sentence) as a bare ``"``, which TeX's ligatures print as a closing quote."""
    return latex.replace('"', STRAIGHT_DOUBLE_QUOTE)


def mark_completed_lines(latex: str) -> str:
    """Highlighted code whose lines end in a ``# completed`` comment, those lines set on a coloured band
    (``\\hwcompleted``, defined in the report's preamble): the lines the students filled in."""
    return _COMPLETED_LINE.sub(r"\1\\hwcompleted{\2}", latex)


def _map_markdown_prose(source: str, transform: Callable[[str], str]) -> str:
    """Apply ``transform`` to each line outside fenced code blocks."""
    out, in_fence = [], False
    for line in source.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
        else:
            out.append(line if in_fence else transform(line))
    return "\n".join(out)


def _headings(source: str) -> list[tuple[int, str]]:
    found, in_fence = [], False
    for line in source.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.match(line)):
            found.append((len(match.group(1)), _HTML_IMG.sub("", match.group(2)).strip()))
    return found


# ------------------------------------------------------------------------------------------ preprocessors


class DropFrontMatter(Preprocessor):
    """Drop the cells before the "Part 2" heading and the heading line itself."""

    def preprocess(self, nb, resources):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown" and any(
                _PART2_HEADING.match(t) for _, t in _headings(cell.source)
            ):
                lines = cell.source.split("\n")
                cell.source = "\n".join(
                    line
                    for line in lines
                    if not ((m := _HEADING.match(line)) and _PART2_HEADING.match(m.group(2).strip()))
                ).strip()
                nb.cells = ([cell] if cell.source else []) + nb.cells[index + 1 :]
                break
        return nb, resources


class CellMarkers(Preprocessor):
    """Each support code cell, and each cell of given code the notebook prints unchanged (tag ``given``),
    reduced to one line where it ran: ``metadata.hw3_marker`` says what the cell holds and where its code
    is (the template prints it after the cell's number); the support markdown cells go."""

    def preprocess(self, nb, resources):
        kept = []
        for cell in nb.cells:
            if has_tag(cell, SUPPORT_TAG):
                if cell.cell_type != "code":
                    continue
                cell.metadata["hw3_marker"] = {"what": opening_comment(cell.source), "where": "support"}
                cell.outputs = []
            elif has_tag(cell, GIVEN_TAG) and cell.cell_type == "code":
                names = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.ClassDef)]
                cell.metadata["hw3_marker"] = {"what": " and ".join(names), "where": "given"}
            kept.append(cell)
        nb.cells = kept
        return nb, resources


class KeepTogether(Preprocessor):
    """``metadata.hw3_lines``: the lines of the report's text that a code cell and its outputs take; the
    template's ``\\hwkeep`` decides from it where the cell starts (kept whole when it fits a page's two
    thirds, else split, never leaving a few lines alone on the next page)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        lines = 1 if "hw3_marker" in cell.metadata else len(cell.source.splitlines())
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                lines += len(output.text.splitlines())
            elif output.output_type in ("display_data", "execute_result"):
                data = output.get("data", {})
                if {"image/png", "application/pdf", "image/jpeg"} & set(data):
                    lines += FIGURE_LINES / CODE_LINE_HEIGHT
                else:
                    lines += len(str(data.get("text/markdown", data.get("text/plain", ""))).splitlines())
        height = round(lines * CODE_LINE_HEIGHT + CELL_FRAME_LINES)
        cell.metadata["hw3_lines"] = height
        return cell, resources


class PrintableOutputs(Preprocessor):
    """Keep only outputs LaTeX can print: HTML, JavaScript and widgets go (text/plain or an image stands
    in); SVG goes where PNG or PDF exists (SVG needs Inkscape), else a note says it was there."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        kept = []
        for output in cell.get("outputs", []):
            if output.output_type in ("display_data", "execute_result"):
                data = output.get("data", {})
                if "application/vnd.jupyter.widget-view+json" in data:
                    continue  # a live widget (tqdm.notebook): nothing printable
                for mime in ("text/html", "application/javascript"):
                    data.pop(mime, None)
                if "image/svg+xml" in data:
                    data.pop("image/svg+xml")
                    if not {"image/png", "application/pdf"} & set(data):
                        data.setdefault("text/plain", "[SVG figure: not printable without Inkscape]")
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept
        return cell, resources


class CleanOutputText(Preprocessor):
    """Output text as a terminal shows it (``clean_stream_text``), with the characters no font has
    replaced (``sanitize``) and lines wrapped at ``columns`` display columns."""

    sanitize = AnyTrait(default_value=None, allow_none=True)  # str -> str; None: keep every character
    columns = AnyTrait(default_value=CODE_COLUMNS)

    def _clean(self, text: str) -> str:
        text = clean_stream_text(text)
        return wrap_columns(self.sanitize(text) if self.sanitize else text, self.columns)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = self._clean(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                for mime in ("text/plain", "text/markdown"):
                    if mime in output.get("data", {}):
                        text = output.data[mime]
                        output.data[mime] = self._clean(text) if mime == "text/plain" else self._md(text)
            elif output.output_type == "error":
                output.traceback = [self._clean(line) for line in output.get("traceback", [])]
        cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]
        return cell, resources

    def _md(self, text: str) -> str:
        return self.sanitize(text) if self.sanitize else text


class MarkdownForPrint(Preprocessor):
    """Headings shifted so the "Task N" headings become sections, images and HTML images dropped (remote
    files never reach LaTeX), inline math tightened, attachments dropped."""

    def preprocess(self, nb, resources):
        levels = [
            level
            for cell in nb.cells
            if cell.cell_type == "markdown"
            for level, text in _headings(cell.source)
            if _TASK_HEADING.match(text)
        ]
        shift = 1 - min(levels) if levels else 0

        def fix_line(line: str) -> str:
            line = _HTML_IMG.sub("", _MD_IMAGE.sub("", line))
            if match := _HEADING.match(line):
                level = min(6, max(1, len(match.group(1)) + shift))
                line = "#" * level + " " + match.group(2).strip()
            return tighten_inline_math(line)

        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _map_markdown_prose(cell.source, fix_line)
                cell.pop("attachments", None)
        nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
        return nb, resources


def print_pipeline(sanitize: Callable[[str], str] | None = None) -> list[Preprocessor]:
    """The preprocessors of the module docstring, in order, enabled."""
    return [
        DropFrontMatter(enabled=True),
        CellMarkers(enabled=True),
        CoalesceStreamsPreprocessor(enabled=True),
        PrintableOutputs(enabled=True),
        CleanOutputText(enabled=True, sanitize=sanitize),
        KeepTogether(enabled=True),
        MarkdownForPrint(enabled=True),
    ]


def prepare_notebook(
    nb: nbformat.NotebookNode, sanitize: Callable[[str], str] | None = None
) -> nbformat.NotebookNode:
    """A print-ready copy of an executed notebook: the pipeline of the module docstring."""
    nb, resources = copy.deepcopy(nb), {}
    for preprocessor in print_pipeline(sanitize):
        nb, resources = preprocessor(nb, resources)
    return nb


# -------------------------------------------------------------------------------------------- export


@dataclass
class NotebookTex:
    """nbconvert's LaTeX for the notebook, split for the report, plus the extracted figures."""

    definitions: str
    body: str
    figures: dict[str, bytes] = field(default_factory=dict)  # path relative to the TeX folder -> bytes


def notebook_to_latex(nb: nbformat.NotebookNode, sanitize: Callable[[str], str] | None = None) -> NotebookTex:
    """Clean ``nb`` for print and export it with the report's nbconvert template."""
    printable = prepare_notebook(nb, sanitize)
    exporter = LatexExporter(template_file=NOTEBOOK_TEMPLATE, extra_template_paths=[str(TEMPLATE_DIR)])
    exporter.register_filter("mark_completed_lines", mark_completed_lines)
    exporter.register_filter("straight_double_quotes", straight_double_quotes)
    exporter.register_filter("answer_keys", cell_answer_keys)
    resources = {"output_files_dir": FIGURES_DIR, "charlim": CODE_COLUMNS}
    latex, resources = exporter.from_notebook_node(printable, resources=resources)
    head, marker, rest = latex.partition(BODY_MARKER)
    body, end, _ = rest.partition(END_MARKER)
    if not (marker and end):
        raise ReportError(f"{NOTEBOOK_TEMPLATE} did not emit its body markers")
    definitions = head.replace("\\begin{document}", "")  # the report's own document environment holds it
    return NotebookTex(
        definitions=definitions.strip() + "\n",
        body=body.strip() + "\n",
        figures=dict(resources.get("outputs", {})),
    )
