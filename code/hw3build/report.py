"""The PDF report: one LaTeX document (cover, contents, results summary, theory, executed notebook,
appendix) built with ``latexmk -xelatex`` from the jinja2 templates in ``templates/report``.

The TeX tree is assembled in a fresh folder under the report folder (``out_pdf``'s parent): the theory
answers go to ``theory/``, the theory checks to ``checks/`` (the answers ``\\input{checks/...}``), the run's
curves to ``figures/``, the notebook's figures to ``nbfigs/``. On success the PDF is moved into place
atomically and the tree is kept as ``<report dir>/tex`` (plus a copy of ``report.tex``) for inspection; on
failure the tree is kept as ``<report dir>/tex-failed`` and :class:`ReportError` carries the log's error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from hw3.files import write_atomic
from hw3.metrics import MetricsError, check_metrics

from hw3build.latex import (
    REQUIRED_TOOLS,
    ReportError,
    TexMissing,
    breakable,
    check_tex_tools,
    escape_latex,
    plan_glyphs,
    run_latexmk,
)
from hw3build.nbtex import TEMPLATE_DIR, notebook_to_latex

__all__ = ["QUESTIONS", "ReportError", "TexMissing", "build_report", "render_report_tex"]

log = logging.getLogger(__name__)

# The assignment's question titles, in order, with the theory file that answers each.
QUESTIONS = (
    ("Question 1 - Transformers Efficiency", "q1.tex"),
    ("Question 2 - Preventing Variance Explosion", "q2.tex"),
    ("Question 3 - Recurrent Neural Networks", "q3.tex"),
)
THEORY_PREAMBLE = "preamble.tex"
CURVES_NAME = "loss_ppl.png"
TEX_NAME = "report.tex"
TMP_PREFIX = ".tex-"


def _jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["e"] = escape_latex
    env.filters["escape"] = escape_latex
    env.filters["brk"] = breakable
    return env


# ------------------------------------------------------------------------------------------ context


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1e6:  # a diverged run: keep the number short enough for its box
            return f"{value:.3g}"
        return f"{value:,.{digits}f}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _hparam_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pairs(rows: list[tuple[str, str]]) -> list[tuple[tuple[str, str], tuple[str, str] | None]]:
    """Rows laid out in two columns, filled top to bottom."""
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:]
    return [(left[i], right[i] if i < len(right) else None) for i in range(half)]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts and lists to dotted keys (``a.b``, ``a[1].c``); lists of scalars joined by commas."""
    if isinstance(value, Mapping):
        if not value:
            return [(prefix, "{}")]
        rows: list[tuple[str, Any]] = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list | tuple):
        if all(isinstance(item, str | int | float | bool) or item is None for item in value):
            return [(prefix, ", ".join(str(item) for item in value) if value else "(none)")]
        rows = []
        for index, item in enumerate(value, start=1):
            rows.extend(_flatten(item, f"{prefix}[{index}]"))
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:g}")]
    return [(prefix, value if value is None else str(value))]


def _grouped(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record as table groups: its scalar entries first, then one group per nested entry."""
    scalars = [(str(k), v) for k, v in record.items() if not isinstance(v, Mapping | list | tuple)]
    groups = [{"title": None, "rows": _flatten(dict(scalars))}] if scalars else []
    for key, value in record.items():
        if isinstance(value, Mapping | list | tuple):
            rows = [
                (name.removeprefix(str(key)).lstrip(".") or str(key), item)
                for name, item in _flatten(value, str(key))
            ]
            groups.append({"title": str(key), "rows": rows})
    return groups


def _student_rows(config: Any) -> list[dict[str, Any]]:
    rows = []
    for student in config.students:
        fields = getattr(student, "placeholder_fields", ())
        placeholder = bool(getattr(student, "is_placeholder", False) or fields)
        rows.append(
            {"name": student.name, "email": student.email, "id": student.id, "placeholder": placeholder}
        )
    return rows


def _find_curves(metrics: Mapping[str, Any], run_dir: Path) -> Path | None:
    candidates = [run_dir / name for name in metrics.get("figures", [])]
    candidates.sort(key=lambda path: path.name != CURVES_NAME)  # loss_ppl.png first
    candidates.append(run_dir / "figures" / CURVES_NAME)
    return next((path for path in candidates if path.is_file()), None)


def _source_date_epoch(executed_nb: Path, record: Mapping[str, Any]) -> int:
    """SOURCE_DATE_EPOCH from the environment, else the build record, else the executed notebook's mtime:
    the same inputs give the same PDF, and the cover date is the day of the run."""
    for candidate in (os.environ.get("SOURCE_DATE_EPOCH"), record.get("source_date_epoch")):
        if candidate not in (None, ""):
            try:
                return int(candidate)
            except (TypeError, ValueError):
                log.warning("ignoring a non-integer SOURCE_DATE_EPOCH %r", candidate)
    return int(executed_nb.stat().st_mtime)


def _context(
    metrics: Mapping[str, Any],
    config: Any,
    record: Mapping[str, Any],
    *,
    epoch: int,
    curves: str | None,
    questions: list[dict[str, str]],
    theory_preamble: str | None,
    sanitize: Any,
) -> dict[str, Any]:
    history = list(metrics.get("history", []))
    best_epoch = metrics.get("best_epoch")
    hparams = dict(metrics.get("hparams") or config.hparams.to_dict())
    timings = metrics.get("timings", {})
    # The run's own profile is the truth about what was trained; either one saying "quick" makes a draft.
    profile = str(metrics.get("profile") or getattr(config, "profile", "full"))
    draft = "quick" in (profile, getattr(config, "profile", None))
    students = _student_rows(config)
    config_path = getattr(config, "path", None)
    run_rows = [
        ("profile", metrics.get("profile")),
        ("device", metrics["run"].get("device_name")),
        ("precision", metrics["run"].get("precision")),
        ("torch version", metrics["run"].get("torch_version")),
        *[(f"timings.{k}", f"{v:.1f} s" if isinstance(v, int | float) else v) for k, v in timings.items()],
        *_flatten(metrics.get("data", {}), "data"),
    ]
    tables = [
        {
            "title": "Run",
            "note": "From the executed notebook's metrics.json: where it ran, how long it took, and the "
            "fingerprint of the data it trained on.",
            "groups": [{"title": None, "rows": [(k, v) for k, v in run_rows if v is not None]}],
        }
    ]
    if record:
        tables.append(
            {
                "title": "Build record",
                "note": "From the build record (build/build.json): versions, hashes, timings and the commit.",
                "groups": _grouped(record),
            }
        )
    return {
        "draft": draft,
        "profile": profile,
        "profile_line": "quick (DRAFT, not the submission)" if draft else f"{profile} (submission)",
        "date": datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%-d %B %Y"),
        "students": students,
        "has_placeholders": any(s["placeholder"] for s in students),
        "config_name": Path(config_path).name if config_path else "submission.toml",
        "summary": {
            "test_ppl": _fmt(metrics["test_ppl"]),
            "test_loss": _fmt(metrics["test_loss"], 3),
            "best_val_ppl": _fmt(metrics["best_val_ppl"]),
            "best_epoch": best_epoch,
            "epochs": len(history) or hparams.get("epochs", "?"),
            "train_time": _duration(timings.get("train_seconds")),
            "device": str(metrics["run"].get("device_name", "?")),
        },
        "curves": curves,
        "sentences": [sanitize(str(sentence)) for sentence in metrics.get("sentences", [])],
        "hparam_rows": _pairs([(name, _hparam_value(value)) for name, value in hparams.items()]),
        "history": [
            {
                "epoch": row.get("epoch"),
                "train_loss": _fmt(row.get("train_loss"), 3),
                "val_loss": _fmt(row.get("val_loss"), 3),
                "val_ppl": _fmt(row.get("val_ppl")),
                "lr": f"{row.get('lr', float('nan')):.3g}",
                "seconds": _fmt(row.get("seconds"), 0),
                "best": row.get("epoch") == best_epoch,
            }
            for row in history
        ],
        "tables": tables,
        "questions": questions,
        "theory_preamble": theory_preamble,
        "glyph_preamble": "",
    }


# -------------------------------------------------------------------------------------------- build


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an older ``dst``."""
    if dst.exists():
        old = dst.with_name(dst.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    src.rename(dst)


def _remove_stale_workdirs(report_dir: Path, older_than_s: float = 3600) -> None:
    """TeX folders left by a killed build (a live build takes seconds, so an hour-old one is dead)."""
    now = time.time()
    for stale in report_dir.glob(f"{TMP_PREFIX}*"):
        if stale.is_dir() and now - stale.stat().st_mtime > older_than_s:
            shutil.rmtree(stale, ignore_errors=True)


def render_report_tex(
    executed_nb: Path,
    metrics: Mapping[str, Any],
    theory_src: Path,
    checks_dir: Path,
    config: Any,
    record: Mapping[str, Any],
    workdir: Path,
    *,
    source_date_epoch: int,
) -> Path:
    """Assemble the TeX tree for the report in ``workdir``; return the main ``.tex`` (no TeX run)."""
    theory_src, checks_dir, executed_nb = Path(theory_src), Path(checks_dir), Path(executed_nb)
    try:
        check_metrics(metrics, source="the run's metrics.json")
    except MetricsError as exc:
        raise ReportError(str(exc)) from None
    missing = [name for _, name in QUESTIONS if not (theory_src / name).is_file()]
    if missing:
        raise ReportError(f"theory answers missing in {theory_src}: {', '.join(missing)}")
    if not checks_dir.is_dir():
        raise ReportError(
            f"theory checks folder {checks_dir} does not exist: run `python -m hw3.theory_checks --out {checks_dir}`"
        )
    try:
        nb = nbformat.read(executed_nb, as_version=4)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the executed notebook {executed_nb}: {exc}") from exc

    _copy_tree(theory_src, workdir / "theory")
    _copy_tree(checks_dir, workdir / "checks")
    curves_src = _find_curves(metrics, executed_nb.parent)
    curves = None
    if curves_src is not None:
        (workdir / "figures").mkdir(exist_ok=True)
        shutil.copy2(curves_src, workdir / "figures" / curves_src.name)
        curves = f"figures/{curves_src.name}"
    else:
        log.warning("no loss/perplexity figure found next to %s", executed_nb)

    # First pass without sanitizing: which characters do the fonts lack? Generated text (notebook outputs,
    # sentences) gets the unprintable ones replaced; everything else gets DejaVu Sans as fallback.
    theory_texts = [
        p.read_text(encoding="utf-8", errors="replace") for p in (workdir / "theory").rglob("*.tex")
    ]
    theory_texts += [
        p.read_text(encoding="utf-8", errors="replace") for p in (workdir / "checks").rglob("*.tex")
    ]
    raw_outputs = [json.dumps(cell.get("outputs", []), ensure_ascii=False) for cell in nb.cells]
    raw_sources = [cell.source for cell in nb.cells]
    probe = plan_glyphs([*theory_texts, *raw_outputs, *raw_sources, *map(str, metrics.get("sentences", []))])

    notebook = notebook_to_latex(nb, sanitize=probe.sanitize)
    for name, data in notebook.figures.items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (workdir / "notebook-defs.tex").write_text(notebook.definitions, encoding="utf-8")
    (workdir / "notebook-body.tex").write_text(notebook.body, encoding="utf-8")

    preamble = workdir / "theory" / THEORY_PREAMBLE
    questions = [{"title": title, "file": f"theory/{name}"} for title, name in QUESTIONS]
    context = _context(
        metrics,
        config,
        record,
        epoch=source_date_epoch,
        curves=curves,
        questions=questions,
        theory_preamble=f"theory/{THEORY_PREAMBLE}" if preamble.is_file() else None,
        sanitize=probe.sanitize,
    )
    env = _jinja_env()
    first = env.get_template("report.tex.j2").render(context)
    glyphs = plan_glyphs([first, notebook.body, *theory_texts])
    context["glyph_preamble"] = glyphs.preamble()
    tex = env.get_template("report.tex.j2").render(context)
    tex_path = workdir / TEX_NAME
    tex_path.write_text(tex, encoding="utf-8")
    return tex_path


def build_report(
    executed_nb: Path,
    metrics: Mapping[str, Any],
    theory_src: Path,
    checks_dir: Path,
    config: Any,
    record: Mapping[str, Any],
    out_pdf: Path,
) -> Path:
    """Build the report PDF at ``out_pdf`` (atomically) and return its path.

    ``config`` is a :class:`hw3build.config.SubmissionConfig` (students, profile, hparams, path);
    ``record`` any JSON-like dict (the build record) printed in the appendix.
    Raises :class:`TexMissing` when xelatex/latexmk/pandoc are absent, :class:`ReportError` otherwise.
    """
    check_tex_tools(REQUIRED_TOOLS)
    out_pdf = Path(out_pdf).resolve()
    report_dir = out_pdf.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    epoch = _source_date_epoch(Path(executed_nb), record)
    _remove_stale_workdirs(report_dir)
    workdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=report_dir))
    started = time.monotonic()
    try:
        tex_path = render_report_tex(
            executed_nb, metrics, theory_src, checks_dir, config, record, workdir, source_date_epoch=epoch
        )
        pdf = run_latexmk(tex_path, source_date_epoch=epoch)
    except BaseException as exc:
        failed = report_dir / "tex-failed"  # kept for inspection; replaced by the next failure
        shutil.rmtree(failed, ignore_errors=True)
        if workdir.exists():
            workdir.rename(failed)
        if isinstance(exc, ReportError):  # point the message at the kept folder
            raise type(exc)(str(exc).replace(str(workdir), str(failed))) from exc
        raise
    write_atomic(out_pdf, pdf.read_bytes())
    write_atomic(report_dir / TEX_NAME, tex_path.read_bytes())
    _replace_dir(workdir, report_dir / "tex")
    log.info("report built in %.1f s: %s", time.monotonic() - started, out_pdf)
    return out_pdf


def main(argv: list[str] | None = None) -> int:
    """Rebuild only the PDF from an existing run folder (the full pipeline is ``invoke build``)."""
    import argparse
    import sys

    from hw3build.config import ConfigError, load_config
    from hw3build.locks import LockBusy, build_lock_for

    parser = argparse.ArgumentParser(prog="python -m hw3build.report", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help="build/run/<key>: executed.ipynb, metrics.json, figures/")
    parser.add_argument("--config", type=Path, default=Path("submission.toml"))
    parser.add_argument("--profile", choices=("quick", "full"), help="override the config's profile")
    parser.add_argument("--theory", type=Path, default=Path("theory"))
    parser.add_argument("--checks", type=Path, default=Path("build/theory"))
    parser.add_argument("--record", type=Path, default=Path("build/build.json"))
    parser.add_argument("--out", type=Path, default=Path("build/report/report.pdf"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config(args.config, profile=args.profile)
        metrics = json.loads((args.run_dir / "metrics.json").read_text(encoding="utf-8"))
        record = json.loads(args.record.read_text(encoding="utf-8")) if args.record.is_file() else {}
        record.pop("build", None)  # this build's clock time and durations never go into the PDF
        with build_lock_for(args.out):  # a build may be writing build/ (``invoke build`` holds its lock)
            pdf = build_report(
                args.run_dir / "executed.ipynb", metrics, args.theory, args.checks, config, record, args.out
            )
    except (ConfigError, ReportError, LockBusy, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(pdf)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
