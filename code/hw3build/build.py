"""The build pipeline: ``submission.toml`` -> the zip a student uploads.

Stages, in order (each printed with its time)::

    config -> preflight -> lock -> render -> execute -> theory -> record -> report -> zip -> validate

The config is validated and everything the PDF will need is checked (:mod:`hw3build.preflight`) before
any work; the build folder is locked for the whole run, and what a killed build left is cleared first
(:mod:`hw3build.leftovers`, :func:`hw3build.notebook.runs.recover`). The zip is written and validated in
``build/dist/.staging`` and only then renamed over ``build/dist/<name>.zip``, so a failure in any stage,
validation included, leaves the previous good zip untouched and says which stage failed.

The project root (``theory/``, the git commit) is the repository this package lives in, wherever the
config is: ``--config ../elsewhere.toml`` still builds into ``<repository>/build``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw3.files import write_atomic
from hw3.hparams import PROFILES
from hw3.metrics import MetricsError, read_metrics
from hw3tools.locks import BUILD_LOCK_NAME, DEFAULT_TIMEOUT_S, build_lock
from hw3tools.repo import ROOT

from hw3build import leftovers
from hw3build.errors import BuildError
from hw3build.failpoints import failpoint
from hw3build.notebook.prose import AnswerError, fill_answers
from hw3build.record import build_facts, collect_record, run_finished_epoch, write_record
from hw3build.report.inputs import ReportInputs
from hw3build.submission.config import ConfigError, SubmissionConfig, load_config
from hw3build.submission.package import make_zip
from hw3build.submission.validate import ValidationReport, validate_zip

THEORY_KEY_NAME = ".inputs-sha256"
STAGE_NAMES = (
    "config", "preflight", "lock", "render", "execute", "theory", "record", "report", "zip", "validate",
)  # fmt: skip

# Time limits (seconds). A cell tagged ``training`` gets hours on the full profile (the slowest CPUs we
# measured train it in about 2 h), every other cell minutes; the theory checks take seconds.
CELL_TIMEOUT_S = 30 * 60
TRAINING_TIMEOUT_S = {"quick": 2 * 3600, "full": 12 * 3600}
THEORY_TIMEOUT_S = 30 * 60


class BuildFailed(BuildError, RuntimeError):
    """A stage failed; ``stage`` names it and the previous zip (if any) is still in place."""

    def __init__(self, stage: str, cause: BaseException | str) -> None:
        self.stage = stage
        self.cause = cause
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"build failed in stage '{stage}': {detail}")


class StageError(BuildError, RuntimeError):
    """A stage's own failure, with a message meant for the user (no traceback needed)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds a notebook cell, a cell tagged ``training`` (None: by profile) and the theory checks may run."""

    cell: int = CELL_TIMEOUT_S
    training: int | None = None
    theory: int = THEORY_TIMEOUT_S

    def training_for(self, profile: str) -> int:
        return self.training if self.training is not None else TRAINING_TIMEOUT_S[profile]


# --- the heavy stages, injectable so tests can replace them with fakes ---------------------------------


def run_preflight(config: SubmissionConfig, project_root: Path) -> list[str]:
    from hw3build.preflight import preflight

    return preflight(config, project_root)


def run_render(config: SubmissionConfig, out_path: Path) -> Path:
    from hw3build.notebook.render import render_notebook

    return render_notebook(config, out_path)


def run_execute(nb_path: Path, parameters: dict[str, Any], run_root: Path, **options: Any) -> Any:
    from hw3build.notebook.execute import execute_notebook

    return execute_notebook(nb_path, parameters, run_root, **options)


def run_theory_checks(out_dir: Path, project_root: Path, *, timeout_s: float = THEORY_TIMEOUT_S) -> str:
    """The theory checks in a subprocess (``python -m hw3build.report.theory``); returns their output."""
    from hw3build.report.theory import TheoryError
    from hw3build.report.theory import run_theory_checks as run_checks

    try:
        return run_checks(out_dir, project_root, timeout_s=timeout_s)
    except TheoryError as exc:
        raise StageError(str(exc)) from None


def theory_inputs_key() -> str:
    from hw3build.report.theory import theory_inputs_key as inputs_key

    return inputs_key()


def run_report(inputs: ReportInputs, out_pdf: Path) -> Path:
    from hw3build.report.report import build_report

    return build_report(inputs, out_pdf)


@dataclass
class Stages:
    """The functions behind the heavy stages (the real ones by default)."""

    preflight: Callable[[SubmissionConfig, Path], list[str]] = run_preflight
    render: Callable[[SubmissionConfig, Path], Path] = run_render
    execute: Callable[..., Any] = run_execute
    theory: Callable[..., str] = run_theory_checks
    report: Callable[..., Path] = run_report


@dataclass(frozen=True)
class BuildPaths:
    """Where every stage reads and writes: ``project_root`` and ``build_dir`` given, the rest named here."""

    project_root: Path
    build_dir: Path
    notebook: Path = field(init=False)
    run_root: Path = field(init=False)
    theory_out: Path = field(init=False)
    theory_src: Path = field(init=False)
    report_pdf: Path = field(init=False)
    dist: Path = field(init=False)
    staging: Path = field(init=False)
    record: Path = field(init=False)

    def __post_init__(self) -> None:
        b = self.build_dir
        named = {
            "notebook": b / "notebook" / "hw3.ipynb",
            "run_root": b / "run",
            "theory_out": b / "theory",
            "theory_src": self.project_root / "theory",
            "report_pdf": b / "report" / "report.pdf",
            "dist": b / "dist",
            "staging": b / "dist" / ".staging",
            "record": b / "build.json",
        }
        for name, path in named.items():
            object.__setattr__(self, name, path)  # frozen: set once, here


def build_paths(project_root: str | Path | None = None, build_dir: str | Path | None = None) -> BuildPaths:
    """The project root (default: this repository, wherever the config is) and ``<root>/build``."""
    root = Path(project_root) if project_root is not None else ROOT
    return BuildPaths(
        project_root=root, build_dir=Path(build_dir) if build_dir is not None else root / "build"
    )


@dataclass
class BuildResult:
    zip_path: Path
    size_bytes: int
    test_ppl: float | None
    cache_hit: bool | None
    warnings: list[str]
    timings: dict[str, float]
    validation: ValidationReport
    record_path: Path
    total_seconds: float = 0.0
    removed_stale: list[Path] = field(default_factory=list)


@dataclass
class _Build:
    """One build's settings and what its stages produced so far (each stage reads and fills it)."""

    config: SubmissionConfig
    paths: BuildPaths
    stages: Stages
    force: bool
    timeouts: Timeouts
    run: _StageRunner
    say: Callable[[str], None]
    started: float
    notebook: Path | None = None
    execution: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    pdf: Path | None = None
    staged: Path | None = None
    final: Path | None = None
    validation: ValidationReport | None = None
    removed: list[Path] = field(default_factory=list)


def build(
    config_path: str | Path = "submission.toml",
    profile: str | None = None,
    force: bool = False,
    *,
    data_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    project_root: str | Path | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    timeouts: Timeouts | None = None,
    stages: Stages | None = None,
    echo: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the submission zip; raise :class:`BuildFailed` naming the stage that failed.

    ``data_dir`` (an offline WikiText-2 folder) overrides the config's ``data_dir``. ``project_root``
    (where ``theory/`` lives and whose git commit is recorded) defaults to this repository, ``build_dir``
    to ``<project_root>/build``.
    """
    say = echo or _print
    paths = build_paths(project_root, build_dir)
    timings: dict[str, float] = {}
    started = time.monotonic()
    run = _StageRunner(say, timings)
    config = _load(run, say, config_path, profile, data_dir)
    stages = stages or Stages()
    with run("preflight") as note:
        note(", ".join(stages.preflight(config, paths.project_root)) + " checked")
    with ExitStack() as held:
        with run("lock") as note:
            held.enter_context(build_lock(paths.build_dir, timeout=lock_timeout))
            removed = leftovers.sweep(paths.build_dir)
            if removed:
                note(f"removed {len(removed)} leftover(s) of an interrupted build")
        return _locked_build(_Build(config, paths, stages, force, timeouts or Timeouts(), run, say, started))


def _load(
    run: _StageRunner, say: Callable[[str], None], config_path: str | Path, profile: str | None, data_dir: Any
) -> SubmissionConfig:
    with run("config"):
        config = load_config(Path(config_path), profile=profile)
        if data_dir is not None:
            folder = Path(data_dir).expanduser().resolve()
            if not folder.is_dir():
                raise ConfigError(f"--data-dir {data_dir}: no such folder")
            config = dataclasses.replace(config, data_dir=folder)
    say(
        f"      {config.profile} profile, device {config.device}, students {config.ids[0]} and {config.ids[1]}"
    )
    if config.warnings:
        _banner(say, config.warnings)
    return config


def _locked_build(b: _Build) -> BuildResult:
    """The stages that write into the build folder, in order (the lock is held)."""
    for stage in (_render, _execute, _theory, _record, _report, _zip, _validate):
        stage(b)
    return _finish(b)


def _render(b: _Build) -> None:
    with b.run("render"):
        b.notebook = Path(b.stages.render(b.config, b.paths.notebook))


def _execute(b: _Build) -> None:
    with b.run("execute") as note:
        b.execution = b.stages.execute(
            b.notebook,
            b.config.run_parameters(),
            b.paths.run_root,
            force=b.force,
            data_dir=b.config.data_dir,
            cell_timeout=b.timeouts.cell,
            training_timeout=b.timeouts.training_for(b.config.profile),
        )
        try:
            b.metrics = read_metrics(b.execution.metrics_path)
        except MetricsError as exc:
            raise StageError(f"the notebook's record is unusable: {exc}") from None
        try:  # the prose answers from the run's numbers (or the students' own): seconds, never a re-run
            fill_answers(Path(b.execution.executed_path), b.metrics, b.paths.project_root)
        except AnswerError as exc:
            raise StageError(str(exc)) from None
        note(f"cache {'hit' if b.execution.cache_hit else 'miss'}, key {str(b.execution.key)[:12]}")


def _theory(b: _Build) -> None:
    with b.run("theory") as note:
        # reused while what the checks read is unchanged (hw3build.report.theory.theory_inputs_key)
        key = theory_inputs_key()
        key_file = b.paths.theory_out / THEORY_KEY_NAME
        if not b.force and key_file.is_file() and key_file.read_text(encoding="utf-8").strip() == key:
            note("reused: the checks' inputs are unchanged")
            return
        key_file.unlink(missing_ok=True)
        b.stages.theory(b.paths.theory_out, b.paths.project_root, timeout_s=b.timeouts.theory)
        write_atomic(key_file, key + "\n")


def _record(b: _Build) -> None:
    with b.run("record"):
        executed = Path(b.execution.executed_path)
        b.record = collect_record(
            b.config,
            metrics=b.metrics,
            execution={
                "key": str(b.execution.key),
                "executed_notebook": _relative(executed, b.paths.project_root),
            },
            repo_dir=b.paths.project_root,
            data_dir=b.config.data_dir or getattr(b.execution, "data_dir", None),
            source_date_epoch=run_finished_epoch(executed),
        )
        write_record({**b.record, "build": _facts(b)}, b.paths.record)


def _report(b: _Build) -> None:
    with b.run("report"):
        b.pdf = Path(
            b.stages.report(
                ReportInputs(
                    Path(b.execution.executed_path),
                    b.metrics,
                    b.paths.theory_src,
                    b.paths.theory_out,
                    b.config,
                    b.record,  # only what the inputs determine: no clock time, no durations
                ),
                b.paths.report_pdf,
            )
        )


def _zip(b: _Build) -> None:
    with b.run("zip"):
        b.staged = make_zip(Path(b.execution.executed_path), b.pdf, *b.config.ids, b.paths.staging)
        failpoint("zip:staged")


def _validate(b: _Build) -> None:
    with b.run("validate") as note:
        names = [student.name for student in b.config.students]
        b.validation = validate_zip(b.staged, strict=False, literal_text=names)
        if not b.validation.ok:
            b.say(b.validation.format())
            raise StageError(
                f"the new zip breaks {len(b.validation.failures)} rule(s); it stays in {b.paths.staging}, "
                "the previous zip is untouched"
            )
        b.final = b.paths.dist / b.staged.name
        os.replace(b.staged, b.final)
        b.validation.zip_path = b.final
        b.removed = _remove_stale_zips(b.paths.dist, keep=b.final)
        note(f"{len(b.validation.checks)} checks passed")


def _facts(b: _Build, total: float | None = None) -> dict[str, Any]:
    timings = dict(b.run.timings)
    if total is not None:
        timings["total"] = total
    return build_facts(
        timings=timings,
        cache_hit=None if b.execution is None else bool(b.execution.cache_hit),
        execution_seconds=None if b.execution is None else float(b.execution.seconds),
    )


def _finish(b: _Build) -> BuildResult:
    """Write the final build record and print the summary."""
    total = time.monotonic() - b.started
    facts = _facts(b, total)
    facts["zip"] = {"path": _relative(b.final, b.paths.project_root), "bytes": b.final.stat().st_size}
    # a warning is a check not met: its title states the rule, its detail what was found instead
    facts["validation"] = {
        "ok": b.validation.ok,
        "warnings": [{"check": c.title, "found": c.detail} for c in b.validation.warnings],
    }
    write_record({**b.record, "build": facts}, b.paths.record)
    warnings = list(b.config.warnings) + [
        f"`invoke validate --strict` will refuse this zip: {c.detail}" for c in b.validation.warnings
    ]
    result = BuildResult(
        zip_path=b.final,
        size_bytes=b.final.stat().st_size,
        test_ppl=b.metrics.get("test_ppl"),
        cache_hit=bool(b.execution.cache_hit),
        warnings=warnings,
        timings=dict(b.run.timings),
        validation=b.validation,
        record_path=b.paths.record,
        total_seconds=total,
        removed_stale=b.removed,
    )
    _summary(b.say, result, b.config)
    return result


class _StageRunner:
    """``with run("name"):`` prints the stage, times it and turns any error into BuildFailed."""

    def __init__(self, say: Callable[[str], None], timings: dict[str, float]) -> None:
        self.say = say
        self.timings = timings

    @contextmanager
    def __call__(self, name: str) -> Iterator[Callable[[str], None]]:
        number = STAGE_NAMES.index(name) + 1
        self.say(f"[{number}/{len(STAGE_NAMES)}] {name} ...")
        failpoint(name)
        notes: list[str] = []
        start = time.monotonic()
        try:
            yield notes.append
        except KeyboardInterrupt:
            self.say(
                f"[{number}/{len(STAGE_NAMES)}] {name} interrupted; the previous zip (if any) is unchanged"
            )
            raise
        except Exception as exc:
            self.timings[name] = time.monotonic() - start
            self.say(f"[{number}/{len(STAGE_NAMES)}] {name} FAILED after {_seconds(self.timings[name])}")
            raise BuildFailed(name, str(exc) if isinstance(exc, StageError) else exc) from exc
        self.timings[name] = time.monotonic() - start
        extra = f" ({'; '.join(notes)})" if notes else ""
        self.say(f"[{number}/{len(STAGE_NAMES)}] {name} done in {_seconds(self.timings[name])}{extra}")


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the project (no local folder names in the report), else its name."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _remove_stale_zips(dist: Path, keep: Path) -> list[Path]:
    """After a good build, drop zips named after other IDs, so the wrong file is never uploaded."""
    removed = []
    for old in dist.glob("ece046211_hw3_*.zip"):
        if old.resolve() != keep.resolve():
            old.unlink()
            removed.append(old)
    return removed


def _banner(say: Callable[[str], None], warnings: list[str] | tuple[str, ...]) -> None:
    line = "!" * 100
    say(line)
    for warning in warnings:
        say(f"!! WARNING: {warning}")
    say(line)


def _summary(say: Callable[[str], None], result: BuildResult, config: SubmissionConfig) -> None:
    ppl = "n/a" if result.test_ppl is None else f"{result.test_ppl:.2f}"
    draft = " (DRAFT: not for submission)" if config.profile != "full" else ""
    say("")
    say(f"Built {result.zip_path}")
    say(f"  size            {_size(result.size_bytes)}")
    say(f"  profile         {config.profile}{draft}")
    say(f"  test perplexity {ppl}")
    say(f"  execution       {'reused from cache' if result.cache_hit else 'ran now'}")
    say(f"  total time      {_seconds(result.total_seconds)}")
    say(f"  build record    {result.record_path}")
    for old in result.removed_stale:
        say(f"  removed stale   {old}")
    if result.warnings:
        _banner(say, result.warnings)
    else:
        say("  no warnings")


def clean(build_dir: str | Path = "build", lock_timeout: float = 0.0) -> bool:
    """Empty ``build_dir`` (refused while a build holds its lock). Returns whether anything was removed.

    The lock file itself stays: a build already waiting on it would otherwise get a lock on a deleted
    file while the next build locks a new one, and the two would run at once.
    """
    build_dir = Path(build_dir)
    if not build_dir.exists():
        return False
    removed = False
    with build_lock(build_dir, timeout=lock_timeout):
        for entry in build_dir.iterdir():
            if entry.name == BUILD_LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed = True
    return removed


def _print(message: str) -> None:
    print(message, flush=True)


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw3build build", description="Build the submission zip.")
    parser.add_argument(
        "--config", default="submission.toml", help="the submission config (default: %(default)s)"
    )
    parser.add_argument("--profile", choices=PROFILES, help="override the config's profile")
    parser.add_argument("--force", action="store_true", help="re-run the notebook even when cached")
    parser.add_argument("--data-dir", help="offline folder with wiki.{train,valid,test}.tokens")
    parser.add_argument("--build-dir", help="where to build (default: build/ in the repository)")
    parser.add_argument(
        "--lock-timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the lock"
    )
    add_timeout_arguments(parser)
    args = parser.parse_args(argv)
    try:
        build(
            args.config,
            profile=args.profile,
            force=args.force,
            data_dir=args.data_dir,
            build_dir=args.build_dir,
            lock_timeout=args.lock_timeout,
            timeouts=timeouts_from(args.cell_timeout, args.training_timeout, args.theory_timeout),
        )
    except BuildFailed as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        print("The previous zip (if any) is unchanged.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def add_timeout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cell-timeout", type=int, help=f"seconds a notebook cell may run (default {CELL_TIMEOUT_S})"
    )
    parser.add_argument(
        "--training-timeout",
        type=int,
        help="seconds a cell tagged 'training' may run (default: "
        + ", ".join(f"{p} {s // 3600} h" for p, s in TRAINING_TIMEOUT_S.items())
        + ")",
    )
    parser.add_argument(
        "--theory-timeout", type=int, help=f"seconds the theory checks may run (default {THEORY_TIMEOUT_S})"
    )


def timeouts_from(cell: int | None, training: int | None, theory: int | None) -> Timeouts:
    """The time limits, defaults where a value is None; refuses non-positive values."""
    for name, value in (("cell", cell), ("training", training), ("theory", theory)):
        if value is not None and value <= 0:
            raise SystemExit(f"--{name}-timeout must be a positive number of seconds, not {value}")
    defaults = Timeouts()
    return Timeouts(
        cell=defaults.cell if cell is None else cell,
        training=training,
        theory=defaults.theory if theory is None else theory,
    )
