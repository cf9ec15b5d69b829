"""The cover's table of the students set alone, before any training: a name or e-mail wider than its column
fails here (:class:`hw3build.report.latex.CoverOverflow`, naming the field), not after the run.

The table is the report's own (``templates/report/students.tex.j2``), on the report's page and in its fonts
(``page.tex.j2``), so TeX measures exactly what the cover will hold.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from hw3build.report.latex import plan_glyphs, run_latexmk
from hw3build.submission.config import Student

TEMPLATE = "cover_check.tex.j2"
TIMEOUT_S = 120


def check_cover_fits(students: Sequence[Student]) -> None:
    """Raise :class:`~hw3build.report.latex.CoverOverflow` when a student's field overflows the cover."""
    _check(tuple((s.name, s.email, s.id, s.is_placeholder) for s in students))


@cache  # one TeX run per set of students in a process (the tests build many times with the same names)
def _check(rows: tuple[tuple[str, str, str, bool], ...]) -> None:
    from hw3build.report.report import jinja_env  # the report's environment: its filters and delimiters

    students = [{"name": n, "email": e, "id": i, "placeholder": p} for n, e, i, p in rows]
    glyphs = plan_glyphs([text for row in rows for text in row[:3]]).preamble()
    with tempfile.TemporaryDirectory(prefix="hw3-cover-") as folder:
        tex = Path(folder) / "cover.tex"
        tex.write_text(
            jinja_env().get_template(TEMPLATE).render(students=students, glyph_preamble=glyphs),
            encoding="utf-8",
        )
        run_latexmk(tex, source_date_epoch=0, timeout_s=TIMEOUT_S, point="latexmk:cover")
