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


AFTER_INTERRUPT = (
    "the build exits non-zero saying the execute stage was interrupted; the partial run kept as "
    "`failed-<key>`; the kernel gone; the cached run and the previous zip unchanged; nothing left behind; "
    "the rebuild reuses the cached run"
)
AFTER_DISK_FULL = (
    "one `ERROR:` line naming the stage and ENOSPC, no traceback; the previous zip and the cached run "
    "unchanged; the rebuild succeeds, reuses the run, validates and leaves nothing behind"
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
    Row("kill-record", "SIGKILL at the start of the record stage", AFTER_A_KILL),
    Row("kill-report", "SIGKILL at the start of the report stage", AFTER_A_KILL),
    Row("kill-latexmk", "SIGKILL with the report's TeX folder written, as latexmk starts", AFTER_A_KILL),
    Row("kill-zip", "SIGKILL at the start of the zip stage", AFTER_A_KILL),
    Row(
        "kill-zip-staged",
        "SIGKILL with the new zip written in dist/.staging, before validation and rename",
        AFTER_A_KILL,
    ),
    Row("kill-validate", "SIGKILL at the start of the validate stage", AFTER_A_KILL),
    Row(
        "kill-recovery",
        "SIGKILL inside recovery (a finished run caught between its two renames, as a killed publish "
        "leaves it; the build killed after recovery's first step)",
        "previous zip byte-identical; the rebuild finishes the recovery (the leftover old run removed), "
        "reuses the finished run and leaves nothing behind",
    ),
    Row(
        "sigint-execute",
        "Ctrl-C (SIGINT to the build's process group) during execution (`--force`, the kernel alive)",
        AFTER_INTERRUPT,
    ),
    Row(
        "sigterm-execute",
        "SIGTERM to the build during execution (`--force`, the kernel alive)",
        AFTER_INTERRUPT,
    ),
    Row(
        "enospc-execute",
        "disk full (ENOSPC) while a finished run moves in (`--force`, between its two renames)",
        AFTER_DISK_FULL + "; the old run put back; the message says to free disk space",
    ),
    Row("enospc-report", "disk full (ENOSPC) in the report stage, as latexmk starts", AFTER_DISK_FULL),
    Row("enospc-zip", "disk full (ENOSPC) in the zip stage, the new zip staged", AFTER_DISK_FULL),
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
        "printed-dollar",
        "a run whose sampled sentence holds `$ 1 @,@ 000` and `\\frac` (as WikiText-2's text can)",
        "the build (report, zip, its validation) succeeds; the PDF shows the sentence as printed; "
        "`validate` passes",
    ),
    Row(
        "same-bytes",
        "two builds of the same commit and config on the same cached run",
        "byte-identical zips (the PDF and notebook carry no clock time or duration of the build)",
    ),
    Row(
        "hostile-names",
        "44 hostile or non-Latin names (Hebrew, Arabic, Cyrillic, Greek, CJK, accented Latin, mixed "
        "directions, LaTeX/Markdown/Python specials, TeX ligature pairs such as `''` and `,,`), with "
        "e-mails holding `+`, each built into a report (the notebook's header, a stub run)",
        "each name accepted by the config and the pre-flight check; the report builds with no missing "
        "glyph; pdftotext gives each name as typed, in reading order, on the cover and in the notebook, "
        "and each e-mail on the cover; the PDF's author field holds the names",
    ),
    Row(
        "hostile-students-build",
        "the whole build (cached run, report, zip, validation) for students with ligature pairs, `$`, "
        "`\\frac`, `%`, right-to-left names, names of 73 characters and e-mails of 64 characters before "
        "the @ (with `+`)",
        "the build and `validate` pass; pdftotext gives each name as typed and each e-mail on the cover; "
        "no word of the cover runs past the page's side margins",
    ),
    Row(
        "notebook-alone",
        "the shipped notebook executed alone in a temporary folder, portalocker absent, no cache folder",
        "it downloads WikiText-2 (from a local mirror), verifies it and runs to the end",
    ),
)
