"""The build pipeline: ``submission.toml`` -> the zip a student uploads.

Stages, in order (each printed with its time)::

    config -> lock -> render -> execute -> theory -> record -> report -> zip -> validate

The config is validated before anything else; the build folder is locked for the whole run. The zip is
written and validated in ``build/dist/.staging`` and only then renamed over ``build/dist/<name>.zip``,
so a failure in any stage, validation included, leaves the previous good zip untouched and says which
stage failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hw3.metrics import MetricsError, read_metrics

from hw3build.config import ConfigError, SubmissionConfig, load_config
from hw3build.locks import BUILD_LOCK_NAME, DEFAULT_TIMEOUT_S, build_lock
from hw3build.package import make_zip
from hw3build.record import collect_record, write_record
from hw3build.validate import ValidationReport, validate_zip

THEORY_KEY_NAME = ".inputs-sha256"
STAGE_NAMES = ("config", "lock", "render", "execute", "theory", "record", "report", "zip", "validate")


class BuildFailed(RuntimeError):
    """A stage failed; ``stage`` names it and the previous zip (if any) is still in place."""

    def __init__(self, stage: str, cause: BaseException | str) -> None:
        self.stage = stage
        self.cause = cause
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"build failed in stage '{stage}': {detail}")


class StageError(RuntimeError):
    """A stage's own failure, with a message meant for the user (no traceback needed)."""


# --- the heavy stages, injectable so tests can replace them with fakes ---------------------------------


def run_render(config: SubmissionConfig, out_path: Path) -> Path:
    from hw3build.render import render_notebook

    return render_notebook(config, out_path)


def run_execute(nb_path: Path, parameters: dict[str, Any], run_root: Path, **options: Any) -> Any:
    from hw3build.execute import execute_notebook

    return execute_notebook(nb_path, parameters, run_root, **options)


def run_theory_checks(out_dir: Path, project_root: Path) -> str:
    """``python -m hw3.theory_checks --out out_dir``; returns its output, raises StageError on failure."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "hw3.theory_checks", "--out", str(out_dir)]
    done = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise StageError(f"`{' '.join(command[1:])}` exited with {done.returncode}:\n{tail}")
    return output


def run_report(
    executed_nb: Path,
    metrics: dict[str, Any],
    theory_src: Path,
    checks_dir: Path,
    config: SubmissionConfig,
    record: dict[str, Any],
    out_pdf: Path,
) -> Path:
    from hw3build.report import build_report

    return build_report(executed_nb, metrics, theory_src, checks_dir, config, record, out_pdf)


@dataclass
class Stages:
    """The functions behind the heavy stages (the real ones by default)."""

    render: Callable[[SubmissionConfig, Path], Path] = run_render
    execute: Callable[..., Any] = run_execute
    theory: Callable[[Path, Path], str] = run_theory_checks
    report: Callable[..., Path] = run_report


@dataclass(frozen=True)
class BuildPaths:
    """Where every stage reads and writes (see interfaces.md)."""

    project_root: Path
    build_dir: Path

    @property
    def notebook(self) -> Path:
        return self.build_dir / "notebook" / "hw3.ipynb"

    @property
    def run_root(self) -> Path:
        return self.build_dir / "run"

    @property
    def theory_out(self) -> Path:
        return self.build_dir / "theory"

    @property
    def theory_src(self) -> Path:
        return self.project_root / "theory"

    @property
    def report_pdf(self) -> Path:
        return self.build_dir / "report" / "report.pdf"

    @property
    def dist(self) -> Path:
        return self.build_dir / "dist"

    @property
    def staging(self) -> Path:
        return self.dist / ".staging"

    @property
    def record(self) -> Path:
        return self.build_dir / "build.json"


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


def build(
    config_path: str | Path = "submission.toml",
    profile: str | None = None,
    force: bool = False,
    *,
    data_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    project_root: str | Path | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    stages: Stages | None = None,
    echo: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the submission zip; raise :class:`BuildFailed` naming the stage that failed.

    ``data_dir`` (an offline WikiText-2 folder) overrides the config's ``data_dir``.
    ``project_root`` (where ``theory/`` lives and whose git commit is recorded) defaults to the config
    file's folder, ``build_dir`` to ``<project_root>/build``.
    """
    stages = stages or Stages()
    say = echo or _print
    config_path = Path(config_path)
    root = Path(project_root) if project_root is not None else config_path.resolve().parent
    paths = BuildPaths(
        project_root=root, build_dir=Path(build_dir) if build_dir is not None else root / "build"
    )
    timings: dict[str, float] = {}
    started = time.monotonic()
    run = _StageRunner(say, timings)

    with run("config"):
        config = load_config(config_path, profile=profile)
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

    with ExitStack() as held:
        with run("lock"):
            held.enter_context(build_lock(paths.build_dir, timeout=lock_timeout))
        return _locked_build(config, paths, stages, force, run, say, timings, started)


def _locked_build(
    config: SubmissionConfig,
    paths: BuildPaths,
    stages: Stages,
    force: bool,
    run: _StageRunner,
    say: Callable[[str], None],
    timings: dict[str, float],
    started: float,
) -> BuildResult:
    with run("render"):
        notebook = Path(stages.render(config, paths.notebook))

    with run("execute") as note:
        execution = stages.execute(
            notebook, config.run_parameters(), paths.run_root, force=force, data_dir=config.data_dir
        )
        try:
            metrics = read_metrics(execution.metrics_path)
        except MetricsError as exc:
            raise StageError(f"the notebook's record is unusable: {exc}") from None
        note(f"cache {'hit' if execution.cache_hit else 'miss'}, key {str(execution.key)[:12]}")
    execution_info = {
        "key": str(execution.key),
        "cache_hit": bool(execution.cache_hit),
        "seconds": float(execution.seconds),
        "executed_notebook": _relative(Path(execution.executed_path), paths.project_root),
    }

    with run("theory") as note:
        # The checks depend only on the hw3 sources (and the numeric libraries): reuse them when unchanged,
        # so a rebuild after editing prose or templates does not redo them.
        key = theory_inputs_key()
        key_file = paths.theory_out / THEORY_KEY_NAME
        if not force and key_file.is_file() and key_file.read_text(encoding="utf-8").strip() == key:
            note("reused: hw3 sources unchanged")
        else:
            key_file.unlink(missing_ok=True)
            stages.theory(paths.theory_out, paths.project_root)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(key + "\n", encoding="utf-8")

    with run("record"):
        record = collect_record(
            config,
            timings=timings,
            metrics=metrics,
            execution=execution_info,
            repo_dir=paths.project_root,
            data_dir=config.data_dir or getattr(execution, "data_dir", None),
        )
        write_record(record, paths.record)

    with run("report"):
        pdf = Path(
            stages.report(
                Path(execution.executed_path),
                metrics,
                paths.theory_src,
                paths.theory_out,
                config,
                record,
                paths.report_pdf,
            )
        )

    with run("zip"):
        staged = make_zip(Path(execution.executed_path), pdf, *config.ids, paths.staging)

    with run("validate") as note:
        validation = validate_zip(staged, strict=False)
        if not validation.ok:
            say(validation.format())
            raise StageError(
                f"the new zip breaks {len(validation.failures)} rule(s); it stays in {paths.staging}, "
                "the previous zip is untouched"
            )
        final = paths.dist / staged.name
        os.replace(staged, final)
        validation.zip_path = final
        removed = _remove_stale_zips(paths.dist, keep=final)
        note(f"{len(validation.checks)} checks passed")

    total = time.monotonic() - started
    final_record = {
        **record,  # a new dict: the report keeps the one it was given
        "timings": {
            **{name: round(seconds, 3) for name, seconds in timings.items()},
            "total": round(total, 3),
        },
        "zip": {"path": _relative(final, paths.project_root), "bytes": final.stat().st_size},
        "validation": {"ok": validation.ok, "warnings": [c.title for c in validation.warnings]},
    }
    write_record(final_record, paths.record)

    warnings = list(config.warnings) + [
        f"`invoke validate --strict` will refuse this zip: {c.detail}" for c in validation.warnings
    ]
    result = BuildResult(
        zip_path=final,
        size_bytes=final.stat().st_size,
        test_ppl=metrics.get("test_ppl"),
        cache_hit=execution_info["cache_hit"],
        warnings=warnings,
        timings=dict(timings),
        validation=validation,
        record_path=paths.record,
        total_seconds=total,
        removed_stale=removed,
    )
    _summary(say, result, config)
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


def theory_inputs_key() -> str:
    """sha256 of everything the theory checks' results depend on: the hw3 sources and numeric libraries."""
    import hw3

    package = Path(hw3.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in ("torch", "numpy", "matplotlib"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the project (no local folder names in the report), else as given."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


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
    say("")
    say(f"Built {result.zip_path}")
    say(f"  size            {_size(result.size_bytes)}")
    say(
        f"  profile         {config.profile}{' (DRAFT: not for submission)' if config.profile != 'full' else ''}"
    )
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
    """Remove ``build_dir`` (refused while a build holds its lock). Returns whether anything was removed."""
    build_dir = Path(build_dir)
    if not build_dir.exists():
        return False
    with build_lock(build_dir, timeout=lock_timeout):
        for entry in build_dir.iterdir():
            if entry.name == BUILD_LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (build_dir / BUILD_LOCK_NAME).unlink(missing_ok=True)
    try:
        build_dir.rmdir()
    except OSError:  # something appeared meanwhile (another build started): leave it
        pass
    return True


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
    parser = argparse.ArgumentParser(prog="python -m hw3build.build", description="Build the submission zip.")
    parser.add_argument(
        "--config", default="submission.toml", help="the submission config (default: %(default)s)"
    )
    parser.add_argument("--profile", choices=("quick", "full"), help="override the config's profile")
    parser.add_argument("--force", action="store_true", help="re-run the notebook even when cached")
    parser.add_argument(
        "--lock-timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the lock"
    )
    args = parser.parse_args(argv)
    try:
        build(args.config, profile=args.profile, force=args.force, lock_timeout=args.lock_timeout)
    except BuildFailed as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        print("The previous zip (if any) is unchanged.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
