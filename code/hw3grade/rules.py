"""The rule columns of a grade row, and how hw3build.submission.validate's checklist fills them.

Each column holds the worst status of the checks it gathers (fail > warn > ok; "na" when none applied) and
their details. The validator's check titles are matched by the patterns below; a title no pattern knows
lands in "other", so a rule added to the validator is never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hw3build.submission.bounded import LIMIT_NAMES
from hw3build.submission.validate import FAIL, OK, WARN, ValidationReport

NA = "na"
FLAG = "flag"  # across submissions: for a human to look at, never a failure
_RANK = {NA: 0, OK: 1, FLAG: 2, WARN: 3, FAIL: 4}

# (key, what the column checks), in the order of the page and of grades.csv
RULES: tuple[tuple[str, str], ...] = (
    ("layout", "one upload, as .zip or .ipynb, nothing else"),
    ("limits", "within the reader's limits (size, members, depth, pages, time, memory)"),
    ("name", "named ece046211_hw3_<id1>_<id2>"),
    ("ids", "two different IDs with valid check digits"),
    ("archive", "the zip opens"),
    ("members", "the zip holds the .ipynb and the .pdf only"),
    ("notebook", "a valid notebook"),
    ("executed", "executed top to bottom (counts in order, papermill saw no exception)"),
    ("errors", "no error outputs"),
    ("outputs", "the outputs of printing cells saved"),
    ("figures", "the figure outputs saved"),
    ("pdf", "the PDF present (zip form) and opening"),
    ("headings", "every question and task heading, in order"),
    ("latex", "equations rendered (no raw LaTeX)"),
    ("placeholder", "no placeholder student data"),
    ("draft", "not a DRAFT"),
    ("hparams", "the hyper-parameters within the assignment's ranges"),
    ("other", "any other check of the validator"),
)
RULE_KEYS = tuple(key for key, _ in RULES)

_TITLE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), rule)
    for pattern, rule in (
        (r"^zip named ", "name"),
        (r"^two different student IDs|^ID \d+ ", "ids"),
        (r"^zip opens", "archive"),
        (r"^exactly two files", "members"),
        (r"is a valid notebook$", "notebook"),
        (r"^every code cell was executed|^execution counts|^papermill ", "executed"),
        (r"^no error outputs", "errors"),
        (r"^cells that print", "outputs"),
        (r"^figure outputs", "figures"),
        (r"\.pdf opens$|^PDF ", "pdf"),
        (r"heading", "headings"),
        (r"^equations rendered|raw LaTeX|raw \$", "latex"),
        (r"^no placeholder", "placeholder"),
        (r"^trained as the full profile does", "draft"),
    )
)


@dataclass
class Cell:
    status: str = NA
    detail: str = ""

    def merge(self, status: str, detail: str) -> None:
        if _RANK[status] > _RANK[self.status]:
            self.status = status
        if detail and status != OK:
            self.detail = f"{self.detail}; {detail}" if self.detail else detail


def rule_of(title: str) -> str:
    """The column a validator check belongs to."""
    for pattern, rule in _TITLE_RULES:
        if pattern.search(title):
            return rule
    return "other"


def empty_cells() -> dict[str, Cell]:
    return {key: Cell() for key in RULE_KEYS}


def fill_from_report(cells: dict[str, Cell], report: ValidationReport) -> None:
    """Merge every check of ``report`` into its column; a broken limit also marks "limits"."""
    for check in report.checks:
        cells[rule_of(check.title)].merge(check.status, check.detail)
        limit = broken_limit(check.detail)
        if limit and check.status == FAIL:
            cells["limits"].merge(FAIL, check.detail)


def broken_limit(detail: str) -> str | None:
    """The limit a message from hw3build.submission.bounded names, if it is one of theirs."""
    return next((name for name in LIMIT_NAMES if detail.startswith(f"{name}:")), None)


def worst(cells: dict[str, Cell]) -> str:
    return max((cell.status for cell in cells.values()), key=_RANK.__getitem__, default=NA)


__all__ = ["FAIL", "FLAG", "NA", "OK", "RULES", "RULE_KEYS", "WARN", "Cell", "fill_from_report", "rule_of"]
