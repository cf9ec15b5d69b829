"""The scenarios of the fault-injection suite: one row each of docs/reliability.md, in its order.

Each test marks itself ``@pytest.mark.reliability("<id>")``; the suite writes the table (scenario, what was
checked, result) from the outcomes of a run that went through every row (see conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass

AFTER_A_KILL = (
    "previous zip byte-identical; rebuild succeeds; the finished training run is reused (no retraining); "
    "nothing left behind (no temporary file or folder under build/, no process, the lock free)"
)


@dataclass(frozen=True)
class Row:
    id: str
    scenario: str
    checked: str


ROWS = (
    Row("kill-render", "SIGKILL at the start of the render stage", AFTER_A_KILL),
    Row("kill-execute", "SIGKILL at the start of the execute stage", AFTER_A_KILL),
    Row(
        "kill-kernel-running",
        "SIGKILL during execution (`--force`, a cell has run, the kernel is alive)",
        AFTER_A_KILL + "; the kernel exits; the old run stays in place",
    ),
    Row(
        "kill-between-renames",
        "SIGKILL between the two renames that put a finished run in place (`--force`)",
        AFTER_A_KILL + "; the new finished run is recovered, not thrown away",
    ),
    Row("kill-theory", "SIGKILL at the start of the theory stage", AFTER_A_KILL),
    Row(
        "kill-theory-running",
        "SIGKILL while the theory checks run (their inputs changed)",
        AFTER_A_KILL + "; the checks run again",
    ),
    Row("kill-report", "SIGKILL at the start of the report stage", AFTER_A_KILL),
    Row("kill-latexmk", "SIGKILL with the report's TeX folder written, as latexmk starts", AFTER_A_KILL),
    Row("kill-zip", "SIGKILL at the start of the zip stage", AFTER_A_KILL),
    Row(
        "kill-zip-staged",
        "SIGKILL with the new zip written in dist/.staging, before validation and rename",
        AFTER_A_KILL,
    ),
    Row(
        "two-builds",
        "two builds started together",
        "one builds, the other waits or refuses naming the holder's pid; never both writing; "
        "the zip valid afterwards",
    ),
    Row(
        "corrupt-cache",
        "a cached run's metrics.json truncated",
        "reported in one line naming the file; run again (never trusted); the build succeeds",
    ),
    Row(
        "tampered-data",
        "one byte of wiki.valid.tokens changed",
        "the build stops in the execute stage before any training, naming the file and its sha256; "
        "previous zip byte-identical; nothing left behind",
    ),
    Row(
        "same-bytes",
        "two builds of the same commit and config on the same cached run",
        "byte-identical zips (the PDF and notebook carry no clock time or duration of the build)",
    ),
    Row(
        "hostile-names",
        "38 hostile or non-Latin names (Hebrew, Arabic, Cyrillic, Greek, CJK, accented Latin, mixed "
        "directions, LaTeX/Markdown/Python specials), each built into a report",
        "each name accepted by the config and the pre-flight check; the report builds with no missing "
        "glyph; pdftotext gives each name as typed, in reading order, on the cover and in the notebook; "
        "the PDF's author field holds the names",
    ),
    Row(
        "notebook-alone",
        "the shipped notebook executed alone in a temporary folder, portalocker absent, no cache folder",
        "it downloads WikiText-2 (from a local mirror), verifies it and runs to the end",
    ),
)
