"""The report appendix's index of the notebook's support code: for each support cell (tag ``support``),
its number and what it is for (its opening comment). The code
itself, with each definition's docstring, is in the submitted notebook, collapsed."""

from __future__ import annotations

from dataclasses import dataclass

import nbformat

from hw3build.notebook.schema import SUPPORT_TAG, has_tag


@dataclass
class SupportCell:
    number: int | None  # the execution count Jupyter shows, In [number]
    title: str  # the cell's opening comment


def opening_comment(source: str) -> str:
    """The comment lines at the top of a cell, joined (``from __future__`` lines skipped)."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            lines.append(stripped.lstrip("#").strip())
        elif stripped and not stripped.startswith("from __future__"):
            break
        elif lines and not stripped:
            break
    return " ".join(lines)


def index_cell(cell: nbformat.NotebookNode) -> SupportCell:
    """The index entry of one support cell."""
    return SupportCell(number=cell.get("execution_count"), title=opening_comment(cell.source))


def support_index(nb: nbformat.NotebookNode) -> list[SupportCell]:
    """The index entries of the notebook's support cells, in order."""
    tagged = [c for c in nb.cells if c.cell_type == "code" and has_tag(c, SUPPORT_TAG)]
    return [index_cell(cell) for cell in tagged]
