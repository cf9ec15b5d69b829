"""One submission's row: its layout, every rule of hw3build.submission.validate, the grader's facts and the evidence
files the page links to. Whatever the files hold, this returns a row (it runs in its own process: see
runner.py for time and memory)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from hw3build.submission.assignment import SUBMISSION_PREFIX, ZIP_NAME, submission_members
from hw3build.submission.bounded import (
    DEFAULT_LIMITS,
    LimitExceeded,
    Limits,
    Unreadable,
    is_zip,
    list_zip,
    papermill_metadata,
    read_zip,
)
from hw3build.submission.validate import (
    FAIL,
    OK,
    WARN,
    ValidationReport,
    _check_ids,
    check_files,
    validate_zip,
)

from hw3grade.discover import Submission, read_file, upload_name
from hw3grade.evidence import environment, write_evidence
from hw3grade.facts import Facts, gather
from hw3grade.rules import Cell, empty_cells, fill_from_report, worst

NOTEBOOK_NAME = re.compile(rf"^{SUBMISSION_PREFIX}_(\d{{9}})_(\d{{9}})\.ipynb$")
ANY_SUBMISSION_NAME = re.compile(rf"{SUBMISSION_PREFIX}_(\d{{9}})_(\d{{9}})\.(?:zip|ipynb|pdf)$")


def warm_up() -> None:
    """Import and compile, once in the parent, what every check needs, so that each forked process starts
    with it instead of paying for it again."""
    import pypdf  # noqa: F401 - hw3build.submission.bounded imports it lazily

    environment().get_template("notebook.html.j2")


def check_submission(
    submission: Submission, evidence_dir: Path | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """The row of ``submission`` (JSON-able): rules, facts, hashes for the checks across submissions."""
    cells = empty_cells()
    row: dict[str, Any] = {"key": submission.key, "group": submission.group, "upload": None, "ids": []}
    upload = _choose_upload(submission, cells)
    report: ValidationReport | None = None
    pdf: bytes | None = None
    if upload is not None:
        row["upload"] = upload_name(submission, upload)
        try:
            data = read_file(submission, upload, limits)
            report, pdf = _validate(row, cells, row["upload"], data, limits)
        except LimitExceeded as exc:
            cells["limits"].merge(FAIL, str(exc))
        except Unreadable as exc:
            cells["archive"].merge(FAIL, str(exc))
    if report is not None:
        fill_from_report(cells, report)
    if cells["limits"].status == "na":
        cells["limits"].merge(OK, "")
    nb = report.notebook if report else None
    pages = report.pdf_pages if report else None
    papermill = papermill_metadata(nb)[0] if nb is not None else {"parameters": {}}
    profile = papermill["parameters"].get("profile")
    facts = gather(nb, pages, profile if isinstance(profile, str) else None)
    duration = papermill.get("duration")
    facts.run_seconds = float(duration) if isinstance(duration, int | float) else None
    _fill_facts(cells, facts, report)
    row["facts"] = facts.to_dict()
    row["hashes"] = _hashes(nb, pdf)
    row["evidence"] = write_evidence(evidence_dir, submission.key, nb, pdf) if evidence_dir else {}
    row["rules"] = {key: {"status": cell.status, "detail": cell.detail} for key, cell in cells.items()}
    row["status"] = worst(cells)
    return row


def _choose_upload(submission: Submission, cells: dict[str, Cell]) -> str | None:
    """The file to grade: the one .zip or .ipynb; anything else in the folder is reported."""
    files = list(submission.files)
    problems = []
    if submission.junk:
        cells["layout"].merge(WARN, f"ignored {len(submission.junk)} archiver file(s) ({submission.junk[0]})")
    nested = [f for f in files if "/" in submission.relative(f)]
    candidates = [f for f in files if f.lower().endswith((".zip", ".ipynb"))]
    if nested:
        problems.append(f"files in a subfolder: {', '.join(nested[:3])}")
    others = [f for f in files if f not in candidates]
    if others:
        problems.append(f"unexpected files: {', '.join(upload_name(submission, f) for f in others[:3])}")
    if len(candidates) > 1:
        chosen = sorted(candidates, key=lambda f: (not f.lower().endswith(".zip"), f))[0]
        problems.append(
            f"{len(candidates)} uploads ({', '.join(upload_name(submission, f) for f in candidates)}); "
            f"graded {upload_name(submission, chosen)}"
        )
    elif candidates:
        chosen = candidates[0]
    else:
        chosen = None
        problems.append("no .zip or .ipynb uploaded" if files else "the folder is empty")
    cells["layout"].merge(FAIL if problems else OK, "; ".join(problems))
    return chosen


def _validate(
    row: dict[str, Any], cells: dict[str, Cell], name: str, data: bytes, limits: Limits
) -> tuple[ValidationReport, bytes | None]:
    """The validator's report on the upload, and the PDF's bytes when it opened."""
    if is_zip(data):
        return _validate_zip(row, cells, name, data, limits)
    if not name.lower().endswith(".ipynb"):
        raise Unreadable(f"{name} is neither a zip nor a notebook")
    match = NOTEBOOK_NAME.match(name)
    report = ValidationReport(zip_path=Path(name))
    if match:
        cells["name"].merge(OK, "")
        ids = (match.group(1), match.group(2))
    else:
        ids = _ids_from([name])
        cells["name"].merge(FAIL, f"got {name!r}")
    nb_name = submission_members(*ids)[0] if ids else name
    if ids:
        row["ids"] = list(ids)
        report.expect(ids[0] != ids[1], "two different student IDs", f"both are {ids[0]}")
        _check_ids(report, ids, strict=False)
    cells["members"].merge(OK, "")
    cells["pdf"].merge(OK, "notebook-only upload (the PDF is not required)")
    check_files(report, [nb_name, ""], {nb_name: data}, limits=limits)
    return report, None


def _validate_zip(
    row: dict[str, Any], cells: dict[str, Cell], name: str, data: bytes, limits: Limits
) -> tuple[ValidationReport, bytes | None]:
    members = [m for m in list_zip(data, limits) if not m.is_dir]
    nested = [m.name for m in members if m.name.lower().endswith(".zip")]
    if nested:
        cells["layout"].merge(FAIL, f"a zip inside the zip: {', '.join(nested[:3])} (not opened)")
    match = ZIP_NAME.match(name)
    if match:
        ids = (match.group(1), match.group(2))
    else:  # a renamed zip: its members may still carry the IDs
        ids = _ids_from([m.name for m in members])
        cells["name"].merge(FAIL, f"got {name!r}" + (f"; its members are named after {ids}" if ids else ""))
    if not ids:
        report = ValidationReport(zip_path=Path(name))
        report.add(FAIL, "zip named ece046211_hw3_<id1>_<id2>.zip", f"got {name!r}; no IDs inside either")
        return report, None
    row["ids"] = list(ids)
    stand_in = f"{SUBMISSION_PREFIX}_{ids[0]}_{ids[1]}.zip"
    report = validate_zip(stand_in, limits=limits, data=data)
    if not match:
        report.checks = [c for c in report.checks if not c.title.startswith("zip named")]
    pdf = None
    if submission_members(*ids)[1] not in {m.name for m in members}:
        cells["pdf"].merge(FAIL, "the zip holds no PDF named after the IDs")
    if report.pdf_pages is not None:  # it opened: read again for the page's evidence and the hash
        pdf_name = submission_members(*ids)[1]
        pdf = read_zip(data, [pdf_name], limits)[1].get(pdf_name)
    return report, pdf


def _ids_from(names: list[str]) -> tuple[str, str] | None:
    for name in names:
        match = ANY_SUBMISSION_NAME.search(name)
        if match:
            return match.group(1), match.group(2)
    return None


def _fill_facts(cells: dict[str, Cell], facts: Facts, report: ValidationReport | None) -> None:
    if facts.hparams_out_of_range:
        cells["hparams"].merge(FAIL, "; ".join(facts.hparams_out_of_range))
    elif facts.hparams:
        cells["hparams"].merge(OK, "")
    elif report is not None and report.notebook is not None:
        cells["hparams"].merge(WARN, "no hyper-parameters found in Task 3's output")
    if facts.draft and cells["draft"].status in ("na", OK):
        cells["draft"].merge(WARN, "marked DRAFT")
    elif report is not None and report.notebook is not None and cells["draft"].status == "na":
        cells["draft"].merge(OK, "")


def _hashes(nb: Any, pdf: bytes | None) -> dict[str, str]:
    hashes = {}
    if nb is not None:
        hashes["notebook"] = hashlib.sha256(json.dumps(nb, sort_keys=True).encode()).hexdigest()
        outputs = [cell.get("outputs", []) for cell in nb.cells if cell.cell_type == "code"]
        if any(outputs):
            hashes["outputs"] = hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()
    if pdf:
        hashes["pdf"] = hashlib.sha256(pdf).hexdigest()
    return hashes
