"""What could still fail a build after its training run: the run's own text, signals, a full disk, and
kills in the last stages and inside recovery. Each builds on the one trained quick run (``primed``)."""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import unicodedata
import zipfile
from pathlib import Path

import nbformat
import pytest
from builds import ID1, ID2, TINY_HPARAMS, Project, assert_nothing_left_behind, kill, processes_in
from hw3build.failpoints import ENOSPC
from hw3build.notebook import runs
from hw3build.notebook.manifest import write_manifest
from hw3build.submission.validate import RAW_LATEX, validate_zip
from pypdf import PdfReader
from test_kills import killed_then_rebuilt, run_keys
from test_names import _QUOTES, _logical

NAMES = ("Dana Levi", "Noam Cohen")  # builds.write_config's
CAMPUS = "@campus.technion.ac.il"
# WikiText-2 writes 1,000 as "1 @,@ 000"; its training text holds 753 "$" tokens, so a sampled sentence
# can hold one. A backslash command too, to be sure every printed output is read as literal text.
SENTENCE = r"the prize was $ 1 @,@ 000 in 1990 , and \frac { a } { b } of it was paid"


def _rebuilt(project: Project, previous_zip: bytes | None = None) -> str:
    """A plain rebuild succeeds, reusing the finished run, and leaves nothing behind."""
    code, output = project.build()
    assert code == 0, output[-5000:]
    assert "reused from cache" in output, "the finished training run was not reused"
    assert validate_zip(project.zip, literal_text=NAMES).ok
    assert_nothing_left_behind(project)
    if previous_zip is not None:
        assert project.zip.read_bytes() == previous_zip
    return output


# ---------------------------------------------------------------------------------- the run's own text
@pytest.mark.reliability("printed-dollar")
def test_a_run_that_printed_a_dollar_and_a_backslash_builds_and_validates(project: Project) -> None:
    (key,) = run_keys(project)
    folder = project.build_dir / "run" / key
    metrics = json.loads((folder / runs.METRICS_NAME).read_text())
    first = metrics["sentences"][0]
    nb = nbformat.read(folder / runs.EXECUTED_NAME, as_version=4)
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and first in output.text:
                output.text = output.text.replace(first, SENTENCE)
                replaced += 1
    assert replaced, "the run's sentences are not among the notebook's outputs"
    # As if the run had sampled it: the notebook, metrics.json and the manifest say the same.
    nbformat.write(nb, folder / runs.EXECUTED_NAME)
    metrics["sentences"][0] = SENTENCE
    (folder / runs.METRICS_NAME).write_text(json.dumps(metrics, indent=2))
    (folder / "submission.ipynb").unlink()
    (folder / "manifest.json").unlink()
    write_manifest(folder, key)

    _rebuilt(project)
    text = _pdf_text(project)
    assert "$ 1 @,@ 000" in " ".join(text.split()) and RAW_LATEX.search(text), (
        "the sentence is not in the PDF"
    )


def _pdf_text(project: Project) -> str:
    with zipfile.ZipFile(project.zip) as archive:
        pdf = next(n for n in archive.namelist() if n.endswith(".pdf"))
        reader = PdfReader(io.BytesIO(archive.read(pdf)))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


# ------------------------------------------------------------------------------------------- signals
def _interrupted_during_execution(project: Project, send) -> None:
    previous_zip, (key,) = project.zip.read_bytes(), run_keys(project)
    intact = (project.build_dir / "run" / key / runs.METRICS_NAME).read_bytes()
    proc = project.start("--force", failpoint="execute:kernel-running")
    project.wait_paused(proc)
    work = next((project.build_dir / "run").glob(".tmp-*")).resolve()
    assert processes_in(work), "no kernel was running in the work folder"
    send(proc)
    code = proc.wait(timeout=120)
    output = (project.logs / "build.log").read_text(errors="replace")
    kill(proc)
    assert code != 0 and "execute interrupted" in output, output[-3000:]
    failed = project.build_dir / "run" / f"{runs.FAILED_PREFIX}{key}"
    assert (failed / runs.EXECUTED_NAME).is_file(), "the partial run was not kept as failed-<key>"
    assert project.zip.read_bytes() == previous_zip
    assert run_keys(project) == [key] and runs.run_problem(project.build_dir / "run" / key) is None
    assert (project.build_dir / "run" / key / runs.METRICS_NAME).read_bytes() == intact
    assert_nothing_left_behind(project)
    _rebuilt(project)


@pytest.mark.reliability("sigint-execute")
def test_ctrl_c_during_execution_keeps_the_partial_run_as_failed(project: Project) -> None:
    # A terminal's Ctrl-C reaches the whole foreground process group: the build and its kernel.
    _interrupted_during_execution(project, lambda proc: os.killpg(proc.pid, signal.SIGINT))


@pytest.mark.reliability("sigterm-execute")
def test_sigterm_during_execution_takes_the_same_path_as_ctrl_c(project: Project) -> None:
    _interrupted_during_execution(project, lambda proc: os.kill(proc.pid, signal.SIGTERM))


# ----------------------------------------------------------------------------------------- disk full
def _disk_full(project: Project, failpoint: str, stage: str, *extra: str) -> str:
    previous_zip, (key,) = project.zip.read_bytes(), run_keys(project)
    code, output = project.build(*extra, failpoint=failpoint, action=ENOSPC, log="disk-full.log")
    assert code == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"stage '{stage}'" in errors[0] and "No space left on device" in errors[0]
    assert "Traceback" not in output
    assert project.zip.read_bytes() == previous_zip
    assert run_keys(project) == [key] and runs.run_problem(project.build_dir / "run" / key) is None
    _rebuilt(project)
    return errors[0]


@pytest.mark.reliability("enospc-execute")
def test_a_full_disk_while_a_finished_run_moves_in(project: Project) -> None:
    error = _disk_full(project, "execute:publish", "execute", "--force")
    assert "free some disk space" in error


@pytest.mark.reliability("enospc-report")
def test_a_full_disk_in_the_report_stage(project: Project) -> None:
    _disk_full(project, "latexmk", "report")


@pytest.mark.reliability("enospc-zip")
def test_a_full_disk_in_the_zip_stage(project: Project) -> None:
    _disk_full(project, "zip:staged", "zip")


# --------------------------------------------------------------------------- kills in the last stages
@pytest.mark.reliability("kill-record")
def test_killed_at_record(project: Project) -> None:
    killed_then_rebuilt(project, "record")


@pytest.mark.reliability("kill-validate")
def test_killed_at_validate(project: Project) -> None:
    killed_then_rebuilt(project, "validate")


@pytest.mark.reliability("kill-recovery")
def test_killed_inside_recovery(project: Project) -> None:
    previous_zip, (key,) = project.zip.read_bytes(), run_keys(project)
    run_root = project.build_dir / "run"
    # What a build killed between the two renames of runs.publish leaves (as the kill-between-renames row
    # makes it, without training again): the finished run as .tmp-, the run it replaces as .old-.
    shutil.copytree(run_root / key, run_root / f".old-{key}-4242")
    (run_root / key).rename(run_root / f".tmp-{key}-4242")
    proc = project.start(failpoint="recover", log="recovering.log")
    project.wait_paused(proc)
    assert (run_root / key).is_dir() and list(run_root.glob(".old-*")), "not inside recovery"
    kill(proc)
    assert project.zip.read_bytes() == previous_zip
    output = _rebuilt(project)
    assert "removed .old-" in output and run_keys(project) == [key]


# ------------------------------------------------------------------ hostile students, the whole build
# Each pair goes through the real build (config, pre-flight, render, the cached run re-stitched, report,
# zip, the build's own validation), then `validate` as a user runs it, then the cover as pdftotext reads it.
HOSTILE_STUDENTS = (
    (
        ("Shira O''Brien ,,Jr Hi!`x", "a.very.long+tag.address.that.goes.on.and.on.until.sixty.four.c"),
        ("יעל $mith \\frac{1}{2} 50%", "b+hw3@campus.technion.ac.il"),
    ),
    (
        ("Maximiliana Wolfeschlegelstein Bartholomew-Finch Montgomery Ashcombe-Vane", "W" * 64),
        ("محمد علي بن عبد الرحمن الحسيني", "x" * 64),
    ),
)
_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">(.*?)</word>')
_WORD_BOX = re.compile(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">')


def _cover_columns(pdf: Path) -> tuple[str, str]:
    """The cover table's name and e-mail columns, each read top to bottom in reading order (pdftotext's
    lines would interleave the two columns where their cells wrap)."""
    xml = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-bbox", str(pdf), "-"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    words = [(float(y), float(x0), float(x1), html.unescape(t)) for x0, y, x1, t in _WORD.findall(xml)]
    top = next(w for w in words if w[3] == "Name")
    campus = next(w for w in words if w[3] == "Campus" and abs(w[0] - top[0]) < 2)
    id_header = next(w for w in words if w[3] == "ID" and abs(w[0] - top[0]) < 2)
    bottom = next(w[0] for w in words if w[3] == "Date:")
    rows = [w for w in words if top[0] + 2 < w[0] < bottom]
    left = [w for w in rows if w[1] < campus[1] - 2]
    middle = [w for w in rows if campus[1] - 2 <= w[1] < id_header[1] - 2]
    return _read_column(left), _read_column(middle)


def _read_column(words: list[tuple[float, float, float, str]]) -> str:
    lines: list[list[tuple[float, float, float, str]]] = []
    for word in sorted(words):
        if lines and abs(lines[-1][0][0] - word[0]) < 2.5:
            lines[-1].append(word)
        else:
            lines.append([word])
    texts = []
    for line in lines:
        line.sort(key=lambda word: word[1])
        visual = " ".join(word[3] for word in line)
        texts.append(unicodedata.normalize("NFC", _logical(visual).translate(_QUOTES)))
    return "\n".join(texts)


def _flat(text: str) -> str:
    """Without whitespace (a field wraps), in NFKC: joined Arabic letters extract as presentation forms."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _hostile_config(folder: Path, students) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    blocks = [
        f"[[students]]\nname = {json.dumps(name)}\nemail = {json.dumps(email if '@' in email else email + CAMPUS)}"
        f'\nid = "{id_}"\n'
        for (name, email), id_ in zip(students, (ID1, ID2), strict=True)
    ]
    path = folder / "submission.toml"
    path.write_text('profile = "quick"\n' + "".join(blocks) + f"[hparams]\n{TINY_HPARAMS}", encoding="utf-8")
    return path


@pytest.mark.tex
@pytest.mark.reliability("hostile-students-build")
@pytest.mark.parametrize("students", HOSTILE_STUDENTS, ids=("ligatures-specials-plus", "long"))
def test_hostile_students_build_validate_and_stay_on_the_cover(project: Project, students, tmp_path) -> None:
    config = _hostile_config(tmp_path / "config", students)
    hostile = Project(config, project.build_dir, project.data_dir, project.logs)
    code, output = hostile.build(log="hostile.log")
    assert code == 0, output[-5000:]
    assert "reused from cache" in output  # the names are not in the run's key: no retraining
    names = [name for name, _ in students]
    report = validate_zip(hostile.zip, literal_text=names)
    assert report.ok, report.format()
    with zipfile.ZipFile(hostile.zip) as archive:
        pdf = tmp_path / "report.pdf"
        pdf.write_bytes(archive.read(next(n for n in archive.namelist() if n.endswith(".pdf"))))
    names_column, emails_column = _cover_columns(pdf)
    for name, email in students:
        # a long name or address wraps in its column: compared without the line breaks
        assert _flat(name) in _flat(names_column), f"{name!r} not on the cover as typed:\n{names_column}"
        address = email if "@" in email else email + CAMPUS
        assert address in _flat(emails_column), f"{address!r} not on the cover:\n{emails_column}"
    xml = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-bbox", str(pdf), "-"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    width = float(re.search(r'<page width="([\d.]+)"', xml).group(1))
    margin = 2.2 / 2.54 * 72 - 1  # the report's 2.2 cm side margins, in points
    outside = [(x0, x1) for x0, x1 in ((float(a), float(b)) for a, b in _WORD_BOX.findall(xml))
               if x0 < margin or x1 > width - margin]  # fmt: skip
    assert outside == [], "words run off the cover's text area"
