"""The PDF report: one LaTeX document built with ``latexmk -xelatex`` from the jinja2 templates in
``templates/report``: the cover (page 1), the answer index (page 2: each question part and task with its key
result, linked to its page), Part 1 (theory/*.tex), Part 2 (the executed notebook without its support cells,
:mod:`hw3build.report.nbtex`) and the appendix (the support code's index, what the run depends on, Part 1's
appendix when theory/appendix.tex exists). :mod:`hw3build.report.report_context` builds what the templates print.

The TeX tree is assembled in a fresh folder under the report folder (``out_pdf``'s parent): the theory
answers go to ``theory/``, the theory checks to ``checks/`` (the answers ``\\input{checks/...}``), the
notebook's figures to ``nbfigs/``. On success the PDF is moved into place
atomically and the tree is kept as ``<report dir>/tex`` (plus a copy of ``report.tex``) for inspection; on
failure the tree is kept as ``<report dir>/tex-failed`` and :class:`ReportError` carries the log's error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from hw3.files import write_atomic
from hw3.metrics import MetricsError, check_metrics, read_metrics

from hw3build.notebook.schema import template_globals
from hw3build.report.inputs import ReportInputs
from hw3build.report.latex import (
    REQUIRED_TOOLS,
    ReportError,
    TexMissing,
    breakable,
    check_tex_tools,
    escape_latex,
    plan_glyphs,
    run_latexmk,
)
from hw3build.report.nbtex import TEMPLATE_DIR, notebook_to_latex
from hw3build.report.report_context import (
    answer_index,
    cover_context,
    dependency_rows,
    notebook_answer_labels,
    question_titles,
    support_groups,
    theory_answers,
    theory_labels,
)
from hw3build.submission.assignment import QUESTIONS

__all__ = ["ReportError", "TexMissing", "build_report", "render_report_tex"]

log = logging.getLogger(__name__)

THEORY_PREAMBLE = "preamble.tex"
THEORY_APPENDIX = "appendix.tex"  # Part 1's appendix, when the theory answers have one
TEX_NAME = "report.tex"
TMP_PREFIX = ".tex-"


def jinja_env() -> jinja2.Environment:
    """The templates of templates/report, with LaTeX-friendly delimiters and the escaping filters."""
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
    env.globals.update(template_globals())  # the tags and the assignment's headings, declared once
    return env


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


def render_report_tex(inputs: ReportInputs, workdir: Path, *, source_date_epoch: int) -> Path:
    """Assemble the TeX tree for the report in ``workdir``; return the main ``.tex`` (no TeX run)."""
    theory_src, checks_dir, executed_nb = (
        Path(inputs.theory_src),
        Path(inputs.checks_dir),
        Path(inputs.executed_nb),
    )
    metrics, config, record = inputs.metrics, inputs.config, inputs.record
    nb = _checked_inputs(executed_nb, metrics, theory_src, checks_dir)
    _copy_tree(theory_src, workdir / "theory")
    _copy_tree(checks_dir, workdir / "checks")
    sanitize = _printable(workdir, nb, metrics).sanitize
    notebook = notebook_to_latex(nb, sanitize=sanitize)
    for name, data in notebook.figures.items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (workdir / "notebook-defs.tex").write_text(notebook.definitions, encoding="utf-8")
    (workdir / "notebook-body.tex").write_text(notebook.body, encoding="utf-8")

    context = report_context(metrics, config, record, nb, workdir, checks_dir, source_date_epoch, sanitize)
    env = jinja_env()
    first = env.get_template("report.tex.j2").render(context)
    theory_texts = [p.read_text(encoding="utf-8", errors="replace") for p in workdir.glob("theory/**/*.tex")]
    context["glyph_preamble"] = plan_glyphs([first, notebook.body, *theory_texts]).preamble()
    tex_path = workdir / TEX_NAME
    tex_path.write_text(env.get_template("report.tex.j2").render(context), encoding="utf-8")
    return tex_path


def _checked_inputs(
    executed_nb: Path, metrics: Mapping[str, Any], theory_src: Path, checks_dir: Path
) -> nbformat.NotebookNode:
    """The executed notebook, once the metrics, the theory answers and the checks are known to be there."""
    try:
        check_metrics(metrics, source="the run's metrics.json")
    except MetricsError as exc:
        raise ReportError(str(exc)) from None
    missing = [q.theory_file for q in QUESTIONS if not (theory_src / q.theory_file).is_file()]
    if missing:
        raise ReportError(f"theory answers missing in {theory_src}: {', '.join(missing)}")
    if not checks_dir.is_dir():
        raise ReportError(f"theory checks folder {checks_dir} does not exist: run the theory stage first")
    try:
        return nbformat.read(executed_nb, as_version=4)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the executed notebook {executed_nb}: {exc}") from exc


def _printable(workdir: Path, nb: nbformat.NotebookNode, metrics: Mapping[str, Any]):
    """The glyph plan of everything generated (notebook, sentences) and of the theory: which characters the
    fonts lack. Generated text gets the unprintable ones replaced; everything else gets DejaVu Sans."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in workdir.rglob("*.tex")]
    texts += [json.dumps(cell.get("outputs", []), ensure_ascii=False) for cell in nb.cells]
    texts += [cell.source for cell in nb.cells]
    texts += [
        json.dumps(metrics.get("answers", {}), ensure_ascii=False),
        *map(str, metrics.get("sentences", [])),
    ]
    return plan_glyphs(texts)


def report_context(
    metrics: Mapping[str, Any],
    config: Any,
    record: Mapping[str, Any],
    nb: nbformat.NotebookNode,
    workdir: Path,
    checks_dir: Path,
    epoch: int,
    sanitize=str,
) -> dict[str, Any]:
    """Everything report.tex.j2 prints, by part (:mod:`hw3build.report.report_context`)."""
    theory = workdir / "theory"
    return {
        **cover_context(metrics, config, epoch),
        "answer_rows": answer_index(
            metrics, theory_answers(checks_dir), theory_labels(theory), sanitize, notebook_answer_labels(nb)
        ),
        "questions": question_titles(),
        "theory_preamble": f"theory/{THEORY_PREAMBLE}" if (theory / THEORY_PREAMBLE).is_file() else None,
        "theory_appendix": f"theory/{THEORY_APPENDIX}" if (theory / THEORY_APPENDIX).is_file() else None,
        "support_groups": support_groups(nb),
        "dependencies": dependency_rows(metrics, record),
        "glyph_preamble": "",
    }


def build_report(inputs: ReportInputs, out_pdf: Path) -> Path:
    """Build the report PDF at ``out_pdf`` (atomically) and return its path.

    Raises :class:`TexMissing` when xelatex/latexmk/pandoc are absent, :class:`ReportError` otherwise.
    """
    check_tex_tools(REQUIRED_TOOLS)
    out_pdf = Path(out_pdf).resolve()
    report_dir = out_pdf.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    epoch = _source_date_epoch(Path(inputs.executed_nb), inputs.record)
    _remove_stale_workdirs(report_dir)
    workdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=report_dir))
    started = time.monotonic()
    try:
        tex_path = render_report_tex(inputs, workdir, source_date_epoch=epoch)
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

    from hw3.hparams import PROFILES
    from hw3tools.locks import LockBusy, build_lock_for
    from hw3tools.repo import BUILD_DIR, ROOT, THEORY_DIR

    from hw3build.notebook.execute import SHIPPED_NAME
    from hw3build.submission.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m hw3build report", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help="build/run/<key>: executed.ipynb, metrics.json, figures/")
    parser.add_argument("--config", type=Path, default=ROOT / "submission.toml")
    parser.add_argument("--profile", choices=PROFILES, help="override the config's profile")
    parser.add_argument("--theory", type=Path, default=THEORY_DIR)
    parser.add_argument(
        "--build-dir", type=Path, default=BUILD_DIR, help="the build folder (its lock is held)"
    )
    parser.add_argument("--checks", type=Path, help="default: BUILD_DIR/theory")
    parser.add_argument("--record", type=Path, help="default: BUILD_DIR/build.json")
    parser.add_argument("--out", type=Path, help="default: BUILD_DIR/report/report.pdf")
    args = parser.parse_args(argv)
    args.checks = args.checks or args.build_dir / "theory"
    args.record = args.record or args.build_dir / "build.json"
    args.out = args.out or args.build_dir / "report" / "report.pdf"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config(args.config, profile=args.profile)
        # a build may be writing build/ (`invoke build` holds its lock): read and write under it
        with build_lock_for(args.out, build_dir=args.build_dir):
            metrics = read_metrics(args.run_dir / "metrics.json")
            record = json.loads(args.record.read_text(encoding="utf-8")) if args.record.is_file() else {}
            record.pop("build", None)  # this build's clock time and durations never go into the PDF
            inputs = ReportInputs(
                args.run_dir / SHIPPED_NAME, metrics, args.theory, args.checks, config, record
            )
            pdf = build_report(inputs, args.out)
    except (ConfigError, ReportError, MetricsError, LockBusy, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(pdf)
    return 0
