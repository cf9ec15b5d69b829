"""Text a student typed (names, e-mails), printed literally and in its reading order in every document.

Two things make typed text print as something else:
  - characters with a meaning in the markup: Markdown (``* _ [ ] # | $ \\ < &`` ...) in the notebook, and
    LaTeX in the report (escaped by ``hw3build.report.latex.escape_latex``, which uses :func:`directional`);
  - right-to-left scripts. XeTeX shapes each Hebrew or Arabic word right to left but lays the words out
    left to right, so "יוסי כהן" would read "כהן יוסי" on the page. Runs of right-to-left text are
    therefore marked: ``\\RL{...}`` in LaTeX (TeX--XeT's ``\\beginR``/``\\endR``, defined in the report's
    preamble) and ``<span dir="rtl">`` in Markdown, which pandoc turns into the same ``\\RL{...}`` and
    Jupyter shows as written.

The documents are left to right, so only the right-to-left runs are marked, as the Unicode bidirectional
algorithm resolves them in a left-to-right paragraph: neutral characters (spaces, punctuation) between two
right-to-left characters join their run, other neutrals and digits stay left to right (a number inside
a run would otherwise print reversed). (python-bidi reorders text for display; here only the run
boundaries are wanted, so this is written out.)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter

LTR, RTL = "ltr", "rtl"
_STRONG = {"L": LTR, "EN": LTR, "AN": LTR, "R": RTL, "AL": RTL}
# Any ASCII punctuation may be backslash-escaped in Markdown (CommonMark, pandoc); escaping all of it
# makes every character print as typed, whatever the flavour does with it.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def _strong(char: str) -> str | None:
    return _STRONG.get(unicodedata.bidirectional(char))


def has_rtl(text: str) -> bool:
    return any(_strong(char) == RTL for char in text)


def direction_runs(text: str) -> list[tuple[str, str]]:
    """The runs ``(direction, segment)`` of ``text`` in a left-to-right paragraph, in logical order.

    A combining mark (bidi class NSM) takes the direction of the character it follows, so a vowel point
    at the end of a Hebrew word stays in the word's run."""
    strong = [_strong(char) for char in text]
    marks = [unicodedata.bidirectional(char) == "NSM" for char in text]
    after: list[str] = [LTR] * len(text)  # the next strong direction after each position
    following = LTR
    for index in range(len(text) - 1, -1, -1):
        after[index] = following
        following = strong[index] or following
    resolved: list[str] = []
    before = LTR
    for index, direction in enumerate(strong):
        if direction is None:
            if marks[index] and resolved:
                direction = resolved[-1]
            else:
                direction = RTL if before == after[index] == RTL else LTR
        else:
            before = direction
        resolved.append(direction)
    pairs = groupby(zip(resolved, text, strict=True), key=itemgetter(0))
    return [(direction, "".join(char for _, char in group)) for direction, group in pairs]


def directional(text: str, escape: Callable[[str], str], rtl: Callable[[str], str]) -> str:
    """``text`` escaped with ``escape``, each right-to-left run wrapped with ``rtl`` (text without one is
    only escaped)."""
    if not has_rtl(text):
        return escape(text)
    return "".join(
        rtl(escape(segment)) if d == RTL else escape(segment) for d, segment in direction_runs(text)
    )


def markdown_literal(value: object) -> str:
    """``value`` as Markdown that shows exactly these characters, in their reading order."""
    return directional(
        str(value),
        escape=_markdown_escape,
        rtl=lambda text: f'<span dir="rtl">{text}</span>',
    )


def _markdown_escape(text: str) -> str:
    """Every punctuation character backslash-escaped, and an empty span between the two characters of a
    TeX ligature pair pandoc leaves together (``''`` would print as a closing double quote, ``,,`` as a low
    one): pandoc writes the span as ``{}``, which keeps them apart; Jupyter shows nothing for it."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return _LIGATURE_PAIR.sub(r"\1<span></span>", escaped)


_LIGATURE_PAIR = re.compile(r"(\\(['`,]))(?=\\\2)")
