"""invoke tasks: thin wrappers over ``python -m hw3build <command>`` and ``python -m hw3sweep`` (all logic
lives there). ``invoke --list`` shows them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke import Context, Exit, task

ROOT = Path(__file__).resolve().parent  # the checkout invoke runs in
BUILD_DIR = ROOT / "build"


def project() -> Path:
    """This checkout, when the hw3 packages are imported from it; else stop, naming both paths (one
    virtual environment for two clones would read one's templates and write the other's build/)."""
    from hw3tools.repo import CheckoutMismatch, require_checkout

    try:
        return require_checkout(ROOT)
    except CheckoutMismatch as exc:
        raise Exit(f"ERROR: {exc}", code=2) from None


def hw3build(command: str, options: dict[str, object], *args: str) -> None:
    """``python -m hw3build COMMAND`` (in this process) with ``--name value`` for every option set
    (``True`` as a bare flag); a non-zero exit becomes invoke's exit code."""
    from hw3build.cli import main

    argv = [command, *args]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name}")
        elif value not in (None, False):
            argv += [f"--{name}", str(value)]
    code = main(argv)
    if code:
        raise Exit(code=code)


@task(
    help={
        "profile": "quick (minutes, DRAFT) or full (the submission); default: the config's profile",
        "force": "re-run the notebook even when a cached run matches",
        "config": "the submission config (default: submission.toml)",
        "data_dir": "offline folder with wiki.{train,valid,test}.tokens (overrides data_dir in the config)",
        "lock_timeout": "seconds to wait when another build holds build/.lock (default: 10)",
        "cell_timeout": "seconds a notebook cell may run (default: 30 min)",
        "training_timeout": "seconds a cell tagged 'training' may run (default: quick 2 h, full 12 h)",
        "theory_timeout": "seconds the theory checks may run (default: 30 min)",
    }
)
def build(
    c: Context,
    profile: str | None = None,
    force: bool = False,
    config: str = "submission.toml",
    data_dir: str | None = None,
    lock_timeout: int = 10,
    cell_timeout: int | None = None,
    training_timeout: int | None = None,
    theory_timeout: int | None = None,
) -> None:
    """Build build/dist/ece046211_hw3_<id1>_<id2>.zip: notebook, execution, theory checks, PDF, zip, checks."""
    project()
    config_path = Path(config)
    if not config_path.is_absolute() and not config_path.exists():
        config_path = ROOT / config_path  # invoke may run from a subfolder of the repository
    options = {"config": config_path, "profile": profile, "force": force, "data-dir": data_dir}
    options |= {"lock-timeout": lock_timeout, "cell-timeout": cell_timeout}
    options |= {"training-timeout": training_timeout, "theory-timeout": theory_timeout}
    hw3build("build", options)


@task(
    help={
        "zip": "the zip to check (default: the one in build/dist); -z for short",
        "strict": "also refuse the assignment's placeholder students and IDs with a wrong check digit",
    }
)
def validate(c: Context, zip: str | None = None, strict: bool = False) -> None:  # noqa: A002 - the CLI name
    """Check a submission zip against the course's rules and print the checklist."""
    project()
    options = {"strict": strict, "dist-dir": BUILD_DIR / "dist", "config": ROOT / "submission.toml"}
    hw3build("validate", options, *([zip] if zip else []))


@task(
    help={
        "source": "the Moodle archive (zip), a folder of group folders, or one upload",
        "out": "output folder (default: build/grade)",
        "jobs": "submissions checked at once (default 0: the cores)",
        "rerun": "re-execute each notebook with papermill and compare its test perplexity (a GPU machine)",
    }
)
def grade(
    c: Context, source: str, out: str = str(BUILD_DIR / "grade"), jobs: int = 0, rerun: bool = False
) -> None:
    """Check every submission of a Moodle download into one page: build/grade/index.html, grades.csv, JSON."""
    project()
    from hw3grade.cli import main

    argv = [source, "--out", out, *(["--jobs", str(jobs)] if jobs else []), *(["--rerun"] if rerun else [])]
    code = main(argv)
    if code:
        raise Exit(code=code)


@task(
    help={
        "fast": "skip the end-to-end, slow and fault-injection tests (-m 'not e2e and not slow')",
        "args": "extra arguments for pytest, e.g. -k config",
    }
)
def test(c: Context, fast: bool = False, args: str = "") -> None:
    """Run the test suite (pytest); the whole suite, e2e, TeX and fault-injection tests included, unless
    --fast. The fault-injection suite (tests/faults) rewrites docs/reliability.md from its results."""
    project()
    marker = ' -m "not e2e and not slow"' if fast else ""
    with c.cd(str(ROOT)):
        c.run(f"{sys.executable} -m pytest{marker} {args}".rstrip(), pty=False)


@task
def clean(c: Context) -> None:
    """Empty build/ (refused while a build is running; the lock file stays)."""
    project()
    hw3build("clean", {"build-dir": BUILD_DIR})


@task(help={"args": "arguments for benchmarks/bench_train.py (see its --help)"})
def bench(c: Context, args: str = "") -> None:
    """Time the training step (benchmarks/bench_train.py); run it alone on an idle machine."""
    with c.cd(str(ROOT)):
        c.run(f"{sys.executable} benchmarks/bench_train.py {args}".rstrip(), pty=False)


@task(
    help={
        "out": "output folder (default: build/theory)",
        "pdf": "also compile theory/standalone.tex to this PDF, e.g. build/theory/standalone.pdf",
    }
)
def theory(c: Context, out: str = str(BUILD_DIR / "theory"), pdf: str | None = None) -> None:
    """Run the numerical checks behind the theory answers and write their tables (python -m hw3build theory)."""
    project()
    hw3build("theory", {"out": out, "pdf": pdf})


@task(
    help={
        "study": "the study's name (default: sweep-BUDGET; --report/--apply: the latest)",
        "trials": "finished trials the study should reach (all workers and machines together)",
        "workers": "worker processes on this machine (each gets cores / workers threads)",
        "timeout": "seconds after which the workers start no new trial",
        "storage": "journal file, or postgresql+psycopg://USER@HOST/DB to share the study between machines",
        "budget": "quick | proxy (3,000 steps) | full: how long each trial trains",
        "report": "write the study's report (build/sweeps/STUDY/) instead of running trials",
        "apply": "write the best trial's settings into submission.toml (shows the difference first)",
        "args": "more arguments for python -m hw3sweep (see its --help), e.g. '--pruner halving'",
    }
)
def sweep(
    c: Context,
    study: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    budget: str | None = None,
    report: bool = False,
    apply: bool = False,
    args: str = "",
) -> None:
    """Tune the hyper-parameters as an Optuna study (python -m hw3sweep): run, --report or --apply."""
    project()
    options = {
        "--study": study,
        "--trials": trials,
        "--workers": workers,
        "--timeout": timeout,
        "--storage": storage,
        "--budget": budget,
    }
    argv = [f"{flag} {shlex.quote(str(value))}" for flag, value in options.items() if value is not None]
    argv += ["--report"] if report else []
    argv += ["--apply"] if apply else []
    with c.cd(str(ROOT)):
        c.run(" ".join([sys.executable, "-m", "hw3sweep", *argv, args]).rstrip(), pty=False)
