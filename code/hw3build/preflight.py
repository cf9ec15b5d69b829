"""Checks made before any work, so that nobody waits for a training run to learn the PDF cannot be built.

- TeX and pandoc are installed, and the report's fonts are readable;
- the theory answers (``theory/q1.tex`` ...) and the report templates are there;
- one training step on the chosen device and precision agrees with the CPU's
  (``hw3build.device_check``): a broken device is named with the fix before training;
- the students' own Task 5 answer (``answers/task5.md``), if any, renders with the run's numbers;
- every character of the students' names and e-mails has a glyph in the font that sets it (a vowel point
  in the font of its letters' run; ``hw3build.report.latex.plan_glyphs``: the same decision the report
  makes), else the name would print with a hole in it;
- the cover's table of the students, set alone by TeX, has no field wider than its column
  (``hw3build.report.cover_check``), else the name or e-mail would run off the page.

The data is checked at the start of the execute stage (its files are hashed for the cache key), also
before any training.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from hw3tools.repo import TEMPLATES_DIR

from hw3build.device_check import DeviceCheckFailed, check_device
from hw3build.errors import BuildError
from hw3build.notebook.prose import AnswerError, check_own_answer
from hw3build.report.cover_check import check_cover_fits
from hw3build.report.latex import (
    APT_INSTALL,
    FALLBACK_FONT_NAME,
    MAIN_FONT_FILE,
    MONO_FONT_NAME,
    REQUIRED_TOOLS,
    CoverOverflow,
    _font_charset,
    check_tex_tools,
    plan_glyphs,
)
from hw3build.submission.assignment import QUESTIONS
from hw3build.submission.config import SubmissionConfig

REPORT_TEMPLATES = TEMPLATES_DIR / "report"


class PreflightError(BuildError, RuntimeError):
    """Something the build will need is missing; the message says what and how to fix it."""


def check_fonts() -> None:
    """The report's fonts must be readable, or no character of a name can be checked (or printed)."""
    missing = [
        name for name in (MAIN_FONT_FILE, MONO_FONT_NAME, FALLBACK_FONT_NAME) if _font_charset(name) is None
    ]
    if missing:
        raise PreflightError(
            f"the report's fonts {', '.join(missing)} are not installed or not readable:\n    {APT_INSTALL}"
        )


def check_sources(project_root: Path) -> None:
    """The theory answers and the report templates the report stage reads."""
    theory = project_root / "theory"
    missing = [str(theory / q.theory_file) for q in QUESTIONS if not (theory / q.theory_file).is_file()]
    if not REPORT_TEMPLATES.is_dir():
        missing.append(str(REPORT_TEMPLATES))
    if missing:
        raise PreflightError(f"missing from the repository: {', '.join(missing)} (a partial checkout?)")


def check_name_glyphs(config: SubmissionConfig) -> None:
    """Every character the cover prints for the students has a glyph in the font that sets it (a vowel
    point in the font of its letters), in one line per field."""
    problems = []
    for number, student in enumerate(config.students, start=1):
        for field in ("name", "email"):
            value = getattr(student, field)
            unprintable = sorted(plan_glyphs([value]).unprintable)
            if unprintable:
                listed = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in unprintable)
                problems.append(
                    f"students[{number}].{field} = {value!r} holds {listed}, which the report's fonts cannot "
                    f"print there (a mark needs the font of its letters), so the cover would show a hole: "
                    f"write it without {'that character' if len(unprintable) == 1 else 'these characters'}"
                    " (e.g. without cantillation marks, or transliterated)"
                )
    if problems:
        raise PreflightError("; ".join(problems))


def check_cover(config: SubmissionConfig) -> None:
    """The students' table of the cover fits its columns (TeX sets it alone, in the report's fonts)."""
    try:
        check_cover_fits(config.students)
    except CoverOverflow as exc:
        raise PreflightError(str(exc)) from None


def check_training_device(config: SubmissionConfig) -> str:
    """One training step on the chosen device and precision against the CPU's (hw3build.device_check)."""
    try:
        return str(check_device(config.device, config.hparams))
    except DeviceCheckFailed as exc:
        raise PreflightError(str(exc)) from None


def preflight(config: SubmissionConfig, project_root: Path) -> list[str]:
    """Run every check (raises :class:`PreflightError` or ``TexMissing``); returns what was checked."""
    check_tex_tools(REQUIRED_TOOLS)
    check_fonts()
    check_sources(project_root)
    check_name_glyphs(config)
    check_cover(config)
    checked = ["TeX tools", "fonts", "theory sources", "glyphs of the names", "the cover's width"]
    checked.append(check_training_device(config))
    try:
        if check_own_answer(project_root):
            checked.append("answers/task5.md")
    except AnswerError as exc:
        raise PreflightError(str(exc)) from None
    return checked
