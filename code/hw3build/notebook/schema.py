"""The notebook's schema, declared once: its cell tags, its ``parameters`` cell (which names say where a
run reads and writes rather than what it computes, the devices and profiles it may name, how the cell is
read; the profiles are the hyper-parameters' own, ``hw3.hparams.PROFILES``), and what the templates are given to write headings and tags with.

Every module that reads a cell's tags or the parameters cell takes it from here; the assignment's own
names (question and task titles, answer keys, file names) stay in :mod:`hw3build.submission.assignment`, which this
module hands to the templates.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from hw3build.errors import BuildError
from hw3build.submission import assignment

PARAMETERS_TAG = "parameters"  # papermill's: the cell whose values a run may override
INJECTED_PARAMETERS_TAG = "injected-parameters"  # papermill's: the overrides it inserted after it
SUPPORT_TAG = "support"  # collapsed in Jupyter, in the report's appendix instead of Part 2
GIVEN_TAG = "given"  # the assignment's code printed unchanged: one line in the report
TASK5_ANSWER_TAG = "task5-answer"  # the markdown cell the build writes Task 5's answer into
TRAINING_TAG = "training"  # the long, profile-sized time limit
ANSWER_TAG_PREFIX = "answer-"  # answer-t1 ...: a task's key result; the answer index links to \label{ans:t1}
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # papermill's: the error banner cells it adds

# Parameters that say where a run reads and writes, not what it computes.
LOCATION_PARAMETERS = frozenset({"out_dir", "data_dir"})
DEVICES = ("auto", "cpu", "cuda")


class ParameterError(BuildError, ValueError):
    """A parameter the notebook does not define, or a value it cannot take."""


def cell_tags(cell: Any) -> list[str]:
    """The tags of a notebook cell ([] when it has none)."""
    return cell.get("metadata", {}).get("tags", [])


def has_tag(cell: Any, tag: str) -> bool:
    return tag in cell_tags(cell)


def is_parameters_cell(cell: Any) -> bool:
    return cell.cell_type == "code" and has_tag(cell, PARAMETERS_TAG)


def cell_answer_keys(cell: Any) -> list[str]:
    """The tasks whose key result the cell holds: tag ``answer-t1`` -> ``t1``."""
    tags = cell_tags(cell)
    return [tag.removeprefix(ANSWER_TAG_PREFIX) for tag in tags if tag.startswith(ANSWER_TAG_PREFIX)]


def answer_keys(cells: Iterable[Any]) -> set[str]:
    """The tasks whose key result some cell holds."""
    return {key for cell in cells for key in cell_answer_keys(cell)}


def parameter_values(source: str) -> dict[str, Any]:
    """The ``name = literal`` assignments of a parameters cell (comments allowed), evaluated safely;
    :class:`ParameterError` for anything else."""
    values: dict[str, Any] = {}
    try:
        body = ast.parse(source).body
    except SyntaxError as exc:
        raise ParameterError(f"the parameters cell is not Python: {exc}") from None
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            raise ParameterError(
                f"the parameters cell may only hold 'name = literal' lines, not:\n{ast.unparse(node)}"
            )
        try:
            values[name] = ast.literal_eval(value)
        except ValueError:
            raise ParameterError(f"parameter {name} = {ast.unparse(value)} is not a literal") from None
    return values


def template_globals() -> dict[str, Any]:
    """What every template (notebook and report) is given: the tags and the assignment's headings."""
    return {
        "tags": {
            "parameters": PARAMETERS_TAG,
            "support": SUPPORT_TAG,
            "training": TRAINING_TAG,
            "given": GIVEN_TAG,
            "task5_answer": TASK5_ANSWER_TAG,
            "answer_prefix": ANSWER_TAG_PREFIX,
        },
        "assignment": {
            "course_title": assignment.COURSE_TITLE,
            "homework_title": assignment.HOMEWORK_TITLE,
            "part1": assignment.PART1_TITLE,
            "part2": assignment.PART2_TITLE,
            "questions": assignment.QUESTIONS,
            "tasks": {heading.short.lower(): heading for heading in assignment.TASKS},
        },
    }
