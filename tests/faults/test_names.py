"""Names a student may type, each built into a real report: accepted, printed as typed, in reading order.

Each pair of names goes through the real path: ``submission.toml`` parsing, the pre-flight glyph check,
the notebook's header rendered from the templates (Markdown), and the report (cover, PDF metadata, the
notebook section through nbconvert and pandoc) built by xelatex, whose log may hold no missing glyph.
The text pdftotext extracts (logical order) must hold each name exactly as typed, on the cover and in
the notebook's table. The rest of the report is stubbed small (the theory answers, the run), to keep the
TeX runs short.
"""

from __future__ import annotations

import html
import re
import subprocess
import unicodedata
from pathlib import Path

import nbformat
import pytest
from hw3build.notebook.render import render_notebook
from hw3build.preflight import check_name_glyphs
from hw3build.report.inputs import ReportInputs
from hw3build.report.report import build_report
from hw3build.submission.config import parse_config
from nbformat.v4 import new_code_cell, new_output
from scenarios import ROWS

REPO = Path(__file__).resolve().parents[2]
NAMES = (
    # Hebrew, Arabic, Cyrillic, Greek, CJK, accented Latin: right to left, joined letters, composed accents
    "יוסי כהן", "נועה לוי-אברהם", "אביטל בן־דוד", "محمد علي", "فاطمة الزهراء", "Анна", "Юлия Щербакова",
    "Ελένη Παπαδοπούλου", "王小明", "さくら 山田", "Łukasz Żółć", "José Núñez", "Zoë Brontë-Ørsted",
    "Çağla Şahin", "Đorđe Ilić", "O'Neil", "D'Angelo-Smith",
    # both directions in one name
    "Dana לוי", "יעל Smith",
    # characters with a meaning in LaTeX, Markdown or Python
    "50% Bob", "#1 Fan", "[Bob", "Bob $mith$", "Ann & Co", "under_score_name", "{braced}", "tilde~name",
    "caret^name", "back\\slash", "*starred* name", "Anne--Marie", "a---b", "}\\def\\x{evil}",
    "<b>bold</b> | pipe", "\\end{document}", '"Quoted" #!/bin/sh', "%% code", "100% (no) _fix_ `x`",
    # TeX's ligatures would print these pairs as other characters (” „ ¡ ¿ “)
    "O''Brien", "Low,,Mark", "Hi!`there", "Why?`not", "``Ann", "x,,y''z",
)  # fmt: skip
PAIRS = [NAMES[i : i + 2] for i in range(0, len(NAMES), 2)]
ID1, ID2 = "123456782", "012345674"
# TeX prints ' and ` as typographic quotes (its ligatures): read them back as typed. A double quote
# must come out straight: TeX would print both quotes of "a" as a closing one.
_QUOTES = {0x2019: "'", 0x2018: "`"}
_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def _stub_theory(folder: Path) -> tuple[Path, Path]:
    theory, checks = folder / "theory", folder / "checks"
    theory.mkdir()
    checks.mkdir()
    for number in (1, 2, 3):
        (theory / f"q{number}.tex").write_text(f"The answer to question {number}: $x^{number}$.\n")
    return theory, checks


def _metrics() -> dict:
    from hw3.hparams import profile_defaults
    from hw3.metrics import METRICS_SCHEMA

    row = {"epoch": 1, "train_loss": 6.0, "val_loss": 5.5, "val_ppl": 244.7, "lr": 1e-3, "seconds": 1.0}
    return {
        "schema": METRICS_SCHEMA,
        "profile": "quick",
        "hparams": profile_defaults("quick").to_dict(),
        "run": {"device": "cpu", "device_name": "CPU", "precision": "fp32", "torch_version": "2.13.0"},
        "interrupted": False,
        "data": {"vocab_size": 28782},
        "history": [row],
        "best_epoch": 1,
        "best_val_loss": 5.5,
        "best_val_ppl": 244.7,
        "test_loss": 5.45,
        "test_ppl": 232.8,
        "sentences": ["the game was released"] * 3,
        "timings": {"train_seconds": 1.0, "total_seconds": 2.0},
        "figures": [],
    }


def _rtl(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("R", "AL")


def _logical(visual: str) -> str:
    """A left-to-right line's text in reading order: each right-to-left run (from one right-to-left
    character to another, with no left-to-right letter or digit between) reversed, as the Unicode
    bidirectional algorithm lays it out. Plain pdftotext does this too, but takes an ASCII hyphen for
    part of a number ("לוי-אברהם" comes out "אברהם-לוי"), so the words' positions are used instead."""
    out, index = [], 0
    while index < len(visual):
        if not _rtl(visual[index]):
            out.append(visual[index])
            index += 1
            continue
        end = index
        for probe in range(index, len(visual)):
            kind = unicodedata.bidirectional(visual[probe])
            if kind in ("L", "EN", "AN"):
                break
            if _rtl(visual[probe]):
                end = probe
        out.append(visual[index : end + 1][::-1])
        index = end + 1
    return "".join(out)


def page_lines(pdf: Path) -> list[list[str]]:
    """Each page's lines, in reading order, from pdftotext's word boxes (NFKC: joined Arabic letters
    extract as their presentation forms)."""
    xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True)
    pages = []
    for page in xml.stdout.split("<page ")[1:]:
        words = sorted(
            (float(y), float(x0), float(x1), html.unescape(t)) for x0, x1, y, t in _WORD.findall(page)
        )
        lines: list[list[tuple[float, float, str]]] = []
        for y, x0, x1, text in words:
            if lines and abs(lines[-1][0][0] - y) < 2.5:
                lines[-1].append((y, x0, x1, text))
            else:
                lines.append([(y, x0, x1, text)])
        texts = []
        for line in lines:
            line.sort(key=lambda word: word[1])
            visual = line[0][3]
            for (_, _, previous_end, _), (_, start, _, text) in zip(line, line[1:], strict=False):
                visual += ("" if start - previous_end < 0.5 else " ") + text
            texts.append(unicodedata.normalize("NFKC", _logical(visual).translate(_QUOTES)))
        pages.append(texts)
    return pages


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def email_of(number: int, name: str) -> str:
    """A campus address with a "+" tag, as some students use."""
    return f"s{number}+hw3.{len(name)}@campus.technion.ac.il"


def report_for(names: tuple[str, str], folder: Path) -> Path:
    """The real config, pre-flight check, notebook header and report for a pair of names."""
    students = [
        {"name": name, "email": email_of(i, name), "id": id_}
        for i, (name, id_) in enumerate(zip(names, (ID1, ID2), strict=True))
    ]
    config = parse_config({"profile": "quick", "students": students})
    assert [s.name for s in config.students] == list(names)  # accepted as typed
    check_name_glyphs(config)
    rendered = nbformat.read(render_notebook(config, folder / "hw3.ipynb"), as_version=4)
    header = [c for c in rendered.cells[:3] if c.cell_type == "markdown"]
    done = new_code_cell(
        "print('ok')", execution_count=1, outputs=[new_output("stream", name="stdout", text="ok\n")]
    )
    notebook = nbformat.v4.new_notebook(cells=[*header, done], metadata=rendered.metadata)
    run = folder / "run"
    run.mkdir()
    nbformat.write(notebook, run / "executed.ipynb")
    theory, checks = _stub_theory(folder)
    inputs = ReportInputs(run / "executed.ipynb", _metrics(), theory, checks, config, {})
    return build_report(inputs, folder / "report.pdf")


@pytest.mark.tex
@pytest.mark.reliability("hostile-names")
def test_hostile_and_non_latin_names_print_as_typed(tmp_path: Path) -> None:
    assert len(NAMES) >= 30 and len(set(NAMES)) == len(NAMES)
    assert f"{len(NAMES)} hostile" in next(row.scenario for row in ROWS if row.id == "hostile-names")
    problems = []
    for number, names in enumerate(PAIRS):
        folder = tmp_path / f"pair{number}"
        folder.mkdir()
        pdf = report_for(names, folder)  # raises on a TeX error or a missing glyph
        pages = page_lines(pdf)
        cover, text = "\n".join(pages[0]), "\n".join("\n".join(page) for page in pages)
        author = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        for number, name in enumerate(names):
            if _flat(email_of(number, name)) not in _flat(cover):
                problems.append(f"{email_of(number, name)!r} not on the cover")
            if name not in cover:
                problems.append(f"{name!r} not on the cover as typed: {pages[0]}")
            if text.count(name) < 2 and _flat(text).count(_flat(name)) < 2:  # a long name may wrap
                problems.append(f"{name!r} not in the notebook's students table as typed")
            if name not in author:
                problems.append(f"{name!r} not in the PDF's author field")
    assert problems == []
