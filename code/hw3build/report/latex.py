"""Running TeX for the report: the tool check, escaping, glyph fallbacks, and latexmk with log checks.

xelatex exits 0 while dropping glyphs it has no font for (the log says "Missing character"), so the log is
read after every build and such a run counts as a failure. Which characters need a fallback font is
decided before TeX runs, from the fonts' own character maps (fontTools, a matplotlib dependency).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hw3build.errors import BuildError
from hw3build.failpoints import failpoint
from hw3build.processes import ToolTimeout, run_tool
from hw3build.submission.literal import RTL, direction_runs, directional, has_rtl

log = logging.getLogger(__name__)

# The tools the build runs, and the Debian/Ubuntu packages that provide them, the report's fonts and
# poppler-utils (pdftotext, pdftoppm: the tests, and anyone checking the PDF). Declared once: the build
# record lists REQUIRED_TOOLS' versions, and setup.sh installs TEX_PACKAGES (a test checks they agree).
REQUIRED_TOOLS = ("xelatex", "latexmk", "pandoc")
TEX_PACKAGES = (
    "texlive-xetex", "texlive-latex-extra", "texlive-fonts-recommended", "texlive-plain-generic", "lmodern",
    "latexmk", "pandoc", "poppler-utils", "fonts-dejavu-core", "fonts-droid-fallback",
)  # fmt: skip
APT_INSTALL = "sudo apt-get install " + " ".join(TEX_PACKAGES)
LATEXMK_TIMEOUT_S = 600
# What TeX gets from the environment: where it and its fonts are, and the locale; nothing else (a user's
# TEXINPUTS or secrets have no business in a TeX run). kpathsea reads openin_any/openout_any: "p" refuses
# reading or writing outside the TeX folder (absolute paths, "..", dot files), e.g. \input{/etc/passwd}.
TEX_ENV_KEEP = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT",
    "TEXMFHOME", "TEXMFVAR", "TEXMFCONFIG", "TEXMFCNF", "TEXMFLOCAL", "TEXMFSYSVAR", "TEXMFSYSCONFIG",
    "TEXMFCACHE", "FONTCONFIG_FILE", "FONTCONFIG_PATH", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
)  # fmt: skip
REPLACEMENT_CHAR = "\N{REPLACEMENT CHARACTER}"

# The fonts the report's preamble selects (templates/report/report.tex.j2), by file name.
MAIN_FONT_FILE = "lmroman10-regular.otf"  # Latin Modern Roman, found with kpsewhich
MONO_FONT_NAME = "DejaVu Sans Mono"  # found with fc-match
FALLBACK_FONT_NAME = "DejaVu Sans"
# The font of every right-to-left run (\RL{...}: Hebrew, Arabic, with their vowel points and the
# neutrals between their words), shaped as one word so the marks attach to their letters.
RTL_FONT_NAME = FALLBACK_FONT_NAME
# CJK and other scripts DejaVu lacks (WikiText-2 has Japanese titles, e.g. in Task 1's first 20 words).
WIDE_FONT_NAME = "Droid Sans Fallback"


class ReportError(BuildError, RuntimeError):
    """The report could not be built; the message carries the relevant part of the TeX log."""


class TexMissing(ReportError):
    """A tool the report needs (xelatex, latexmk, pandoc) is not installed."""


class CoverOverflow(ReportError):
    """A field of the cover (a student's name or e-mail) is wider than its column."""


def check_tex_tools(tools: Iterable[str] = REQUIRED_TOOLS) -> None:
    """Raise :class:`TexMissing` naming the absent tools and the command that installs them."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise TexMissing(
            f"the PDF report needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed (Debian/Ubuntu):\n    {APT_INSTALL}"
        )


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "[": "{[}",  # after a table row's \\, "[" would open its optional argument (as pandoc writes it)
    "]": "{]}",
    '"': r"\textquotedbl{}",  # TeX's ligatures would print both quotes of "a" as a closing quote
}
STRAIGHT_DOUBLE_QUOTE = _LATEX_SPECIALS['"']


# TeX's ligatures (the main font's Ligatures=TeX) turn these pairs into other characters: "--" an en
# dash, "''" a closing double quote, ",," a low double quote, "!`" an inverted exclamation mark.
TEX_LIGATURE_PAIRS = frozenset({"--", "''", "``", ",,", "!`", "?`"})


def _escape_chars(text: str) -> str:
    # "{}" between the two characters of a ligature pair keeps each character as typed.
    return "".join(
        _LATEX_SPECIALS.get(char, char) + ("{}" if text[i : i + 2] in TEX_LIGATURE_PAIRS else "")
        for i, char in enumerate(text)
    )


def escape_latex(value: object) -> str:
    """Plain text (names, sentences, hashes) to LaTeX that prints it literally, in its reading order
    (right-to-left runs in ``\\RL{...}``: :mod:`hw3build.submission.literal`)."""
    return directional(str(value), _escape_chars, rtl=lambda text: rf"\RL{{{text}}}")


def breakable(value: object, every: int = 32) -> str:
    """Escaped text whose long unbroken tokens (hashes, paths) may break across lines in a table cell."""
    parts = []
    for token in re.split(r"(\s+)", str(value)):
        if len(token) > every and not token.isspace():
            pieces = [token[i : i + every] for i in range(0, len(token), every)]
            parts.append(r"\allowbreak{}".join(escape_latex(piece) for piece in pieces))
        else:
            parts.append(escape_latex(token))
    return "".join(parts)


# --------------------------------------------------------------------------------------------- fonts


@dataclass(frozen=True)
class GlyphPlan:
    """How to print every non-ASCII character of the document.

    ``fallback``: characters the main or the mono font lacks but DejaVu Sans has: the preamble makes them
    active (newunicodechar) and prints them from DejaVu Sans where the current font lacks them (inside a
    right-to-left run, from the run's font, which is DejaVu Sans).
    ``wide``: characters only the wide fallback font (Droid Sans Fallback: CJK) has: always printed from it.
    ``unprintable``: characters the font that sets them lacks: replaced by U+FFFD in generated text. A
    combining mark is set by the font of its letter, so it is printable only where that font has it: in a
    right-to-left run, the run's font (Hebrew and Arabic vowel points); elsewhere, the main and the mono
    font.
    """

    fallback: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # char -> (main has, mono has)
    unprintable: frozenset[str] = frozenset()
    wide: frozenset[str] = frozenset()

    def preamble(self) -> str:
        lines = []
        for char in sorted(self.fallback):
            main_has, mono_has = self.fallback[char]
            lines.append(
                rf"\newunicodechar{{{char}}}{{\hwglyph{{{int(main_has)}}}{{{int(mono_has)}}}{{{ord(char)}}}}}"
            )
        if self.wide:
            lines.append(rf"\newfontfamily\hwwidefont{{{WIDE_FONT_NAME}}}")
            for char in sorted(self.wide):
                lines.append(rf"\newunicodechar{{{char}}}{{\mbox{{\hwwidefont\char{ord(char)}\relax}}}}")
        return "\n".join(lines)

    def sanitize(self, text: str) -> str:
        """Replace the characters no font can print (only for generated text, never for prose)."""
        if not self.unprintable:
            return text
        return "".join(
            ("" if unicodedata.combining(c) else REPLACEMENT_CHAR) if c in self.unprintable else c
            for c in text
        )


def _run_quiet(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


@cache
def _font_charset(spec: str) -> frozenset[int] | None:
    """The code points a font maps; ``spec`` is a TeX file name or a fontconfig family name."""
    path = (
        _run_quiet(["kpsewhich", spec])
        if spec.endswith(".otf")
        else _run_quiet(["fc-match", "-f", "%{file}", spec])
    )
    if not path or not Path(path).is_file():
        return None
    try:
        from fontTools.ttLib import TTFont

        return frozenset(TTFont(path, lazy=True).getBestCmap())
    except Exception as exc:  # a font we cannot read only costs the pre-check; the log check remains
        log.warning("cannot read the character map of %s (%s): %s", spec, path, exc)
        return None


def _by_direction(texts: Iterable[str]) -> tuple[set[str], set[str]]:
    """The non-ASCII characters of ``texts`` set left to right, and those inside right-to-left runs
    (split as :func:`escape_latex` splits them, line by line: a run never spans a line)."""
    ltr: set[str] = set()
    rtl: set[str] = set()
    for text in texts:
        if not has_rtl(text):
            ltr.update(c for c in text if ord(c) > 127)
            continue
        for line in text.splitlines():
            for direction, segment in direction_runs(line):
                (rtl if direction == RTL else ltr).update(c for c in segment if ord(c) > 127)
    return ltr, rtl


def plan_glyphs(texts: Iterable[str]) -> GlyphPlan:
    """Decide, from the character maps of the fonts that set them, how each non-ASCII character of
    ``texts`` is printed."""
    main, mono, fallback, rtl_font = (
        _font_charset(s) for s in (MAIN_FONT_FILE, MONO_FONT_NAME, FALLBACK_FONT_NAME, RTL_FONT_NAME)
    )
    if main is None or mono is None or fallback is None or rtl_font is None:
        log.warning("font character maps unavailable: no glyph fallbacks planned")
        return GlyphPlan()
    ltr_chars, rtl_chars = _by_direction(texts)
    chars = ltr_chars | rtl_chars
    if any(ord(c) not in main or ord(c) not in mono for c in chars) and ord(REPLACEMENT_CHAR) in fallback:
        chars.add(REPLACEMENT_CHAR)  # sanitize() may introduce it
    wide_font = _font_charset(WIDE_FONT_NAME) or frozenset()  # fc-match substitutes when it is absent
    plan_fallback: dict[str, tuple[bool, bool]] = {}
    unprintable, wide = set(), set()
    for char in chars:
        code = ord(char)
        main_has, mono_has = code in main, code in mono
        if unicodedata.combining(char):
            # Never made active (it would be set apart from its letter): the font of its letter sets it,
            # so it must have it wherever the mark occurs.
            in_runs = char not in rtl_chars or code in rtl_font
            outside = char not in ltr_chars or (main_has and mono_has)
            if not (in_runs and outside):
                unprintable.add(char)
        elif main_has and mono_has:
            continue
        elif code in fallback and (char not in rtl_chars or code in rtl_font):
            plan_fallback[char] = (main_has, mono_has)
        elif code in wide_font:
            wide.add(char)
        else:
            unprintable.add(char)
    return GlyphPlan(fallback=plan_fallback, unprintable=frozenset(unprintable), wide=frozenset(wide))


# -------------------------------------------------------------------------------------------- latexmk


@dataclass(frozen=True)
class TexLogReport:
    errors: list[str]
    missing_characters: list[str]
    overfull: list[str]
    # (field, how much too wide) for each overfull line inside a cover field (\hwfield in page.tex.j2)
    overfull_fields: list[tuple[str, str]] = field(default_factory=list)


_MISSING = re.compile(r"Missing character: There is no (.+?) in font (\S+?)(?::|!|$)")
_OVERFULL = re.compile(r"^Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\).*$", re.M)
_MISSING_INSTALL = re.compile(
    r"(?:LaTeX Error: File `([^']+\.(?:sty|cls|def|fd|cfg))' not found"
    r"|fontspec Error: The font \"([^\"]+)\" cannot be found)"
)
_ERROR_LINE = re.compile(r"^(! .*|\S+\.tex:\d+: .*)$", re.M)
_FIELD_START = re.compile(r"^hwfield<(.+)>$")
FIELD_END = "hwfield-end"


def _overfull_fields(log_text: str, tolerance_pt: float) -> list[tuple[str, str]]:
    """Each overfull line the log reports between a cover field's markers, with the field's name."""
    found, current = [], None
    for line in log_text.splitlines():
        start = _FIELD_START.match(line)
        if start:
            current = start.group(1)
        elif line == FIELD_END:
            current = None
        elif current is not None:
            overfull = _OVERFULL.match(line)
            if overfull and float(overfull.group(1)) > tolerance_pt:
                found.append((current, f"{overfull.group(1)}pt"))
    return list(dict.fromkeys(found))


def read_log(log_text: str, overfull_tolerance_pt: float = 2.0) -> TexLogReport:
    """The problems in a TeX log: errors, missing glyphs, and boxes wider than the tolerance."""
    errors = []
    for match in _ERROR_LINE.finditer(log_text):
        context = log_text[match.start() : match.start() + 600].splitlines()[:8]
        errors.append("\n".join(context))
    missing = sorted({f"{m.group(1)} (font {m.group(2)})" for m in _MISSING.finditer(log_text)})
    overfull = [
        m.group(0).strip() for m in _OVERFULL.finditer(log_text) if float(m.group(1)) > overfull_tolerance_pt
    ]
    fields = _overfull_fields(log_text, overfull_tolerance_pt)
    return TexLogReport(errors=errors, missing_characters=missing, overfull=overfull, overfull_fields=fields)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def tex_environment(source_date_epoch: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a TeX run: ``TEX_ENV_KEEP`` from ``base`` (default: ours), dates fixed by
    ``source_date_epoch``, and kpathsea's paranoid file access."""
    base = os.environ if base is None else base
    env = {name: base[name] for name in TEX_ENV_KEEP if name in base}
    env.update(
        SOURCE_DATE_EPOCH=str(source_date_epoch),
        FORCE_SOURCE_DATE="1",  # \today and the PDF dates follow SOURCE_DATE_EPOCH: a reproducible PDF
        max_print_line="10000",  # unwrapped log lines, so the checks see whole messages
        openin_any="p",
        openout_any="p",
    )
    return env


def run_latexmk(
    tex_file: Path, *, source_date_epoch: int, timeout_s: int = LATEXMK_TIMEOUT_S, point: str = "latexmk"
) -> Path:
    """Build ``tex_file`` with ``latexmk -xelatex`` in its own folder; return the PDF. ``point`` names the
    failpoint before TeX starts (the report's run and the pre-flight's cover check apart).

    TeX runs without shell escape, with paranoid file access and a reduced environment
    (:func:`tex_environment`); on a timeout latexmk and everything it started are stopped. Raises
    :class:`ReportError` with the relevant part of the log on a TeX error, a missing glyph or a timeout;
    :class:`TexMissing` when the tools are absent.
    """
    check_tex_tools(("xelatex", "latexmk"))
    workdir = tex_file.parent
    command = [
        "latexmk",
        "-norc",  # a user's ~/.latexmkrc must not change the build
        "-xelatex",
        "-latexoption=-no-shell-escape",  # TeX Live's default allows a list of commands: none here
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-file-line-error",
        tex_file.name,
    ]
    failpoint(point)
    try:
        proc = run_tool(
            command, cwd=workdir, env=tex_environment(source_date_epoch), timeout_s=timeout_s, what="latexmk"
        )
    except ToolTimeout:
        raise ReportError(f"latexmk did not finish in {timeout_s} s (TeX folder: {workdir})") from None
    log_path = tex_file.with_suffix(".log")
    log_text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    report = read_log(log_text)
    pdf = tex_file.with_suffix(".pdf")
    if proc.returncode != 0 or report.errors or not pdf.exists():
        absent = _MISSING_INSTALL.search(log_text)
        if absent:  # a package or font of the TeX Live set is not installed: say how to get it
            raise TexMissing(
                f"LaTeX could not find {absent.group(1) or absent.group(2)} (log: {log_path}); install the TeX packages:\n"
                f"    {APT_INSTALL}"
            )
        detail = (
            "\n\n".join(report.errors[:3]) if report.errors else _tail(log_text or proc.stdout + proc.stderr)
        )
        raise ReportError(
            f"LaTeX failed on {tex_file.name} (latexmk exit {proc.returncode}; log: {log_path}):\n{detail}"
        )
    if report.missing_characters:
        listed = "\n  ".join(report.missing_characters[:20])
        raise ReportError(
            f"xelatex dropped glyphs its fonts lack (log: {log_path}); these characters would be missing "
            f"from the PDF:\n  {listed}"
        )
    if report.overfull_fields:
        field_name, too_wide = report.overfull_fields[0]
        raise CoverOverflow(
            f"{field_name} is wider than the cover's line ({too_wide} too wide, it would run off the page): "
            "shorten it in submission.toml (a name breaks only at its spaces)"
        )
    for line in report.overfull:
        log.warning("report: %s", line)
    return pdf
