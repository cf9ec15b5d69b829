"""Whether an executed notebook ran to the end, and if not, which cell stopped it and in which task.

Success is read from the notebook itself, never from papermill's return: no ``error`` output, every
non-empty code cell has an execution count, no cell has ``metadata.papermill.exception`` set.

A cell that raised has an error output. A cell that ran past its timeout or whose kernel died has none of
its own: papermill marks it "completed" and gives up, so the first cell *without* a count is the next
one, which never ran. The build's papermill engine (:mod:`hw3build.notebook.engine`) therefore adds an error output
named :data:`STOPPED_ERRORS` to the cell that was running, and :func:`find_failure` names that cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nbformat

from hw3build.notebook.schema import PAPERMILL_ERROR_TAG, cell_tags

# The error names the engine gives a cell it had to stop (nbclient's exception classes).
TIMEOUT_ERROR = "CellTimeoutError"
DEAD_KERNEL_ERROR = "DeadKernelError"
STOPPED_ERRORS = (TIMEOUT_ERROR, DEAD_KERNEL_ERROR)


@dataclass(frozen=True)
class Failure:
    """Where a run stopped: the cell (index among all cells), its first line, the task it belongs to."""

    cell_index: int
    first_line: str
    task: str
    reason: str


def heading_of(nb: nbformat.NotebookNode, index: int) -> str:
    """The task a cell belongs to: the nearest preceding 'Task ...' heading, plus the nearest sub-heading."""
    nearest = task = None
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type != "markdown" or PAPERMILL_ERROR_TAG in cell_tags(cell):
            continue
        for line in reversed(cell.source.splitlines()):
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                nearest = nearest or text
                if text.lower().startswith("task") or text.lower().startswith("part"):
                    task = text
                    break
        if task:
            break
    if task and nearest and nearest != task:
        return f"{task} › {nearest}"
    return task or nearest or "(before the first heading)"


def _error_of(cell: Any) -> str | None:
    """The cell's error as 'Name: value', preferring the engine's stop marker over other errors (a timed
    out cell may also show the KeyboardInterrupt that stopping the kernel caused)."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return None
    stopped = [o for o in errors if o.get("ename") in STOPPED_ERRORS]
    chosen = (stopped or errors)[0]
    return f"{chosen.get('ename')}: {chosen.get('evalue')}"


def _started(cell: Any) -> bool:
    return cell.get("metadata", {}).get("papermill", {}).get("start_time") is not None


def find_failure(nb: nbformat.NotebookNode) -> Failure | None:
    """The cell that stopped the run, or None when the notebook is a success (see the module docstring)."""
    last_started: int | None = None
    found: tuple[int, str] | None = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or PAPERMILL_ERROR_TAG in cell_tags(cell):
            continue
        error = _error_of(cell)
        papermill_meta = cell.get("metadata", {}).get("papermill", {})
        if error is not None:
            found = (index, error)
        elif papermill_meta.get("exception") is True:
            found = (index, "the cell raised an exception")
        elif papermill_meta.get("status") == "running":
            found = (index, "the cell never finished (timeout or dead kernel)")
        elif cell.source.strip() and cell.get("execution_count") is None:
            if last_started is not None:  # a run stopped without a marker (not run by our engine)
                found = (last_started, "the run stopped during this cell (dead kernel or timeout?)")
            else:
                found = (index, "the cell was never executed")
        if found:
            break
        if _started(cell):
            last_started = index
    if found is None:
        return None
    index, reason = found
    source = nb.cells[index].source.strip()
    first_line = source.splitlines()[0] if source else ""
    return Failure(cell_index=index, first_line=first_line, task=heading_of(nb, index), reason=reason)


def describe_failure(failure: Failure) -> str:
    return f"{failure.task}: cell {failure.cell_index} ({failure.first_line[:80]!r}) failed: {failure.reason}"
