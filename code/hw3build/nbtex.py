"""The executed notebook as LaTeX for Part 2 of the report (nbconvert with our own template).

Before export the notebook is cleaned for print: progress-bar frames (``\\r``) collapsed to their last
state, terminal cursor codes dropped, HTML/widget/SVG outputs dropped where a printable one exists,
remote images and the notebook's front matter (title, guidelines, agenda: the report has its own cover)
left out, inline math tightened so pandoc keeps it, and headings shifted so that "Task N" headings are
sections like the theory questions. nbconvert then renders code, outputs and figures with
``templates/report/notebook.tex.j2``; its output is split into the definitions (for the preamble) and the
body (for the document).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbconvert.exporters import LatexExporter

from hw3build.latex import ReportError

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "report"
NOTEBOOK_TEMPLATE = "notebook.tex.j2"
FIGURES_DIR = "nbfigs"
BODY_MARKER = "%% ==== hw3 notebook body ===="
END_MARKER = "%% ==== hw3 notebook end ===="
CHARS_PER_LINE = 100  # stream/plain-text wrap width; matches the Verbatim font size in the template

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


def collapse_carriage_returns(text: str) -> str:
    """Keep what a terminal would show: on each line, the text after the last carriage return."""
    text = text.replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            frames = [frame for frame in line.split("\r") if frame]
            line = frames[-1] if frames else ""
        lines.append(line)
    return "\n".join(lines)


def clean_stream_text(text: str) -> str:
    """Collapse progress frames, drop cursor-movement codes (keep colours) and stray control bytes."""
    text = _CSI.sub(lambda m: m.group(0) if m.group(1) == "m" else "", text)
    text = collapse_carriage_returns(text)
    return _CONTROL.sub("", text)


def tighten_inline_math(text: str) -> str:
    """``$ x $`` -> ``$x$``: pandoc only reads math whose delimiters touch the formula. Inline code spans
    (between backticks) are left alone."""
    parts = _CODE_SPAN.split(text)
    for index in range(0, len(parts), 2):  # even parts are outside code spans
        parts[index] = _INLINE_MATH.sub(
            lambda m: "$" + m.group(1).strip() + "$" if m.group(1).strip() else m.group(0), parts[index]
        )
    return "".join(parts)


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


@dataclass
class NotebookTex:
    """nbconvert's LaTeX for the notebook, split for the report, plus the extracted figures."""

    definitions: str
    body: str
    figures: dict[str, bytes] = field(default_factory=dict)  # path relative to the TeX folder -> bytes


def prepare_notebook(
    nb: nbformat.NotebookNode, sanitize: Callable[[str], str] = str
) -> nbformat.NotebookNode:
    """A print-ready copy of an executed notebook (see the module docstring); ``sanitize`` maps generated
    text (outputs) to printable characters."""
    nb = copy.deepcopy(nb)
    headings = {i: _headings(c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"}
    task_levels = [lvl for hs in headings.values() for lvl, text in hs if _TASK_HEADING.match(text)]
    shift = 1 - min(task_levels) if task_levels else 0
    part2 = next((i for i, hs in headings.items() if any(_PART2_HEADING.match(t) for _, t in hs)), None)

    def fix_heading(line: str) -> str:
        match = _HEADING.match(line)
        if not match:
            return line
        text = _HTML_IMG.sub("", match.group(2)).strip()
        if _PART2_HEADING.match(text):
            return ""  # the report prints its own "Part 2" heading
        level = min(6, max(1, len(match.group(1)) + shift))
        return "#" * level + " " + text

    def fix_line(line: str) -> str:
        line = _HTML_IMG.sub("", _MD_IMAGE.sub("", line))
        return tighten_inline_math(fix_heading(line))

    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            if part2 is not None and index < part2:
                continue  # front matter: the report's cover, summary and Part 1 replace it
            cell.source = _map_markdown_prose(cell.source, fix_line)
            cell.pop("attachments", None)
            if cell.source.strip():
                cells.append(cell)
        elif cell.cell_type == "code":
            cell.outputs = _printable_outputs(cell.get("outputs", []), sanitize)
            cells.append(cell)
    nb.cells = cells
    return nb


def _printable_outputs(outputs: list, sanitize: Callable[[str], str]) -> list:
    merged: list = []
    for output in outputs:
        output = copy.deepcopy(output)
        if output.output_type == "stream":
            if merged and merged[-1].output_type == "stream" and merged[-1].name == output.name:
                merged[-1].text += output.text  # a frame may be split across two stream messages
                continue
            merged.append(output)
        elif output.output_type in ("display_data", "execute_result"):
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue  # a live widget (tqdm.notebook): nothing printable
            for mime in ("text/html", "application/javascript", "application/vnd.jupyter.widget-view+json"):
                data.pop(mime, None)  # HTML never reaches LaTeX; text/plain or an image stands in
            if "image/svg+xml" in data and ({"image/png", "application/pdf"} & set(data)):
                data.pop("image/svg+xml")  # SVG needs Inkscape
            if "image/svg+xml" in data:
                data.pop("image/svg+xml")
                data.setdefault("text/plain", "[SVG figure: not printable without Inkscape]")
            if "text/plain" in data:
                data["text/plain"] = sanitize(clean_stream_text(data["text/plain"]))
            if not data:
                continue
            merged.append(output)
        elif output.output_type == "error":
            output.traceback = [sanitize(clean_stream_text(line)) for line in output.get("traceback", [])]
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = sanitize(clean_stream_text(output.text))
    return [o for o in merged if o.output_type != "stream" or o.text.strip()]


def notebook_to_latex(nb: nbformat.NotebookNode, sanitize: Callable[[str], str] = str) -> NotebookTex:
    """Clean ``nb`` for print and export it with the report's nbconvert template."""
    printable = prepare_notebook(nb, sanitize)
    exporter = LatexExporter(
        template_file=NOTEBOOK_TEMPLATE,
        extra_template_paths=[str(TEMPLATE_DIR)],
    )
    resources = {"output_files_dir": FIGURES_DIR, "charlim": CHARS_PER_LINE}
    latex, resources = exporter.from_notebook_node(printable, resources=resources)
    head, marker, rest = latex.partition(BODY_MARKER)
    body, end, _ = rest.partition(END_MARKER)
    if not (marker and end):
        raise ReportError(f"{NOTEBOOK_TEMPLATE} did not emit its body markers")
    # The report's own document environment holds the body.
    definitions = head.replace("\\begin{document}", "")
    return NotebookTex(
        definitions=definitions.strip() + "\n",
        body=body.strip() + "\n",
        figures=dict(resources.get("outputs", {})),
    )
