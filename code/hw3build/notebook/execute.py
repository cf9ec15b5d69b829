"""Run the rendered notebook with papermill, cached by everything that affects the run.

``execute_notebook(nb_path, parameters, run_root)``, in order:
  1. **plan**: resolve the parameters (:mod:`hw3build.notebook.parameters`), find and verify the data, compute the
     cache key (:mod:`hw3build.notebook.cache`);
  2. **recover**: clean up after killed builds (:func:`hw3build.notebook.runs.recover`);
  3. **reuse** ``run_root/<key>/`` when its manifest and notebook say it is a finished, intact, successful
     run (a damaged entry is reported in one line and run again, never trusted);
  4. otherwise **run**: papermill executes into ``run_root/.tmp-<key>-<pid>/`` (the kernel's working
     directory, ``out_dir="."``) with per-cell time limits (:mod:`hw3build.notebook.engine`); success is read from
     the notebook itself; a successful run gets its manifest and is renamed into place, a failed one is
     kept as ``failed-<key>/`` and :class:`ExecutionFailed` names the cell that stopped it and its task;
  5. **ship**: the notebook that goes into the zip, ``<run>/submission.ipynb``: the run's code cells and
     outputs with the current rendered markdown (so a hit carries today's names and prose), with no local
     path of this machine in it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from hw3.files import write_atomic

from hw3build.errors import BuildError
from hw3build.failpoints import failpoint
from hw3build.failures import DEAD_KERNEL_ERROR, TIMEOUT_ERROR, Failure, describe_failure, find_failure
from hw3build.notebook import cache, runs
from hw3build.notebook.engine import ENGINE_NAME, timeout_by_tag
from hw3build.notebook.parameters import ParameterError, default_parameters, resolve_parameters
from hw3build.notebook.runs import EXECUTED_NAME, METRICS_NAME
from hw3build.notebook.schema import INJECTED_PARAMETERS_TAG, PAPERMILL_ERROR_TAG, PARAMETERS_TAG, cell_tags

__all__ = ["ExecutionFailed", "ExecutionResult", "ParameterError", "execute_notebook", "restitch_markdown"]

log = logging.getLogger("hw3build.notebook.execute")

KERNEL_NAME = "python3"
SHIPPED_NAME = "submission.ipynb"
DATA_ENV = "HW3_DATA_DIR"
# papermill records where it read and wrote the notebook: paths of this machine, never shipped.
PAPERMILL_PATH_KEYS = ("input_path", "output_path")


class ExecutionFailed(BuildError, RuntimeError):
    """The notebook did not run to the end. ``partial_path`` is the partially executed notebook."""

    def __init__(
        self,
        message: str,
        *,
        partial_path: Path | None = None,
        cell_index: int | None = None,
        task: str | None = None,
    ) -> None:
        super().__init__(message)
        self.partial_path = partial_path
        self.cell_index = cell_index
        self.task = task


@dataclass(frozen=True)
class ExecutionResult:
    executed_path: Path  # the shipped notebook (current markdown, no local paths)
    metrics_path: Path
    out_dir: Path  # the run folder
    cache_hit: bool
    seconds: float
    key: str
    data_dir: Path | None = None  # the verified WikiText-2 folder the run read (None: no data parameter)


@dataclass(frozen=True)
class RunPlan:
    """What a run will compute and where its data is: the effective parameters and the cache key."""

    parameters: dict[str, Any]
    data_dir: Path | None
    inputs: dict[str, Any]
    key: str
    # what papermill injects after the parameters cell: the values that differ from it, so the injected
    # cell shows what the build overrode (the whole list again when nothing differs would hide that)
    injected: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    progress_bar: bool = True
    log_output: bool = True
    cell_timeout: int | None = None  # seconds for a cell not tagged ``training`` (None: no limit)
    training_timeout: int | None = None  # seconds for a cell tagged ``training``
    require_metrics: bool = True
    kernel_name: str = KERNEL_NAME


def execute_notebook(
    nb_path: Path,
    parameters: dict[str, Any],
    run_root: Path,
    *,
    data_dir: str | Path | None = None,
    force: bool = False,
    progress_bar: bool = True,
    log_output: bool = True,
    cell_timeout: int | None = None,
    training_timeout: int | None = None,
    require_metrics: bool = True,
    kernel_name: str = KERNEL_NAME,
    on_key: Callable[[str, dict[str, Any]], None] | None = None,
) -> ExecutionResult:
    """Execute ``nb_path`` with ``parameters`` (see the module docstring); cached under ``run_root``.

    ``data_dir``: the WikiText-2 folder (None: ``$HW3_DATA_DIR``, the cache, or a download), given to the
    kernel as ``HW3_DATA_DIR``, for notebooks with a ``data_dir`` parameter. ``force`` re-runs even on a
    hit (the old run is replaced only once the new one succeeded). ``cell_timeout`` / ``training_timeout``:
    seconds a cell may run (cells tagged ``training`` get the second). ``require_metrics``: a run that
    writes no ``metrics.json`` is a failure.
    """
    started = time.monotonic()
    nb_path, run_root = Path(nb_path), Path(run_root)
    options = RunOptions(
        progress_bar, log_output, cell_timeout, training_timeout, require_metrics, kernel_name
    )
    rendered = nbformat.read(nb_path, as_version=4)
    plan = plan_run(rendered, parameters, data_dir, kernel_name)
    if on_key is not None:
        on_key(plan.key, plan.inputs)
    _setup_logging()
    run_root.mkdir(parents=True, exist_ok=True)
    for note in runs.recover(run_root):
        log.info("%s", note)

    final = run_root / plan.key
    problem = runs.run_problem(final, require_metrics)
    hit = problem is None and not force
    if hit:
        log.info("cache hit: %s", final)
    else:
        if (final.exists() or final.is_symlink()) and problem is not None:
            log.warning("the cached run %s is damaged (%s): running it again", final.name, problem)
        _explain_miss(run_root, plan.inputs)
        _run(nb_path, plan, run_root, options)
    shipped = ship_notebook(final, rendered)
    return ExecutionResult(
        shipped, final / METRICS_NAME, final, hit, time.monotonic() - started, plan.key, plan.data_dir
    )


# ------------------------------------------------------------------------------------------------ plan
def plan_run(
    rendered: nbformat.NotebookNode,
    parameters: dict[str, Any],
    data_dir: str | Path | None,
    kernel_name: str = KERNEL_NAME,
) -> RunPlan:
    """The effective parameters (``out_dir`` is the run folder, ``"."``), the data folder and the key."""
    if "out_dir" in parameters:
        raise ParameterError("out_dir is chosen by execute_notebook (the run folder); do not pass it")
    if parameters.get("data_dir") is not None:
        raise ParameterError(
            "pass the data folder as execute_notebook(data_dir=...): it reaches the kernel as "
            f"${DATA_ENV}, so the notebook holds no local path"
        )
    effective = resolve_parameters(rendered, parameters)
    if "out_dir" in effective:
        effective["out_dir"] = "."  # the run folder is the kernel's working directory
    folder, data = None, None
    if "data_dir" in effective:
        from hw3.download import wikitext2_dir

        folder = Path(wikitext2_dir(data_dir)).resolve()  # verified against the published hashes
        data = cache.data_file_hashes(folder)
    ensure_kernelspec(kernel_name)
    environment = cache.environment_fingerprint(effective.get("device", "auto"), kernel_name)
    inputs = cache.key_inputs(rendered, effective, data, environment)
    defaults = default_parameters(rendered)
    injected = {
        name: value
        for name, value in effective.items()
        if not (name in defaults and type(defaults[name]) is type(value) and defaults[name] == value)
    }
    return RunPlan(effective, folder, inputs, cache.cache_key(inputs), injected)


def _explain_miss(run_root: Path, inputs: dict[str, Any]) -> None:
    reasons = explain_miss(run_root, inputs)
    if reasons:
        log.info("no cached run for these inputs; the latest run differs in: %s", "; ".join(reasons))


def explain_miss(run_root: Path, inputs: dict[str, Any]) -> list[str]:
    """How ``inputs`` differ from those of the most recent finished run under ``run_root`` (empty if none)."""
    old = runs.latest_inputs(Path(run_root))
    return [] if old is None else cache.explain_difference(old, inputs)


# ------------------------------------------------------------------------------------------------- run
def _run(nb_path: Path, plan: RunPlan, run_root: Path, options: RunOptions) -> None:
    """Execute into a work folder; publish it as ``run_root/<key>`` or raise :class:`ExecutionFailed`."""
    ensure_kernelspec(options.kernel_name)
    work = runs.start(run_root, plan.key, plan.inputs)
    executed_path = work / EXECUTED_NAME
    try:
        with terminate_as_interrupt():
            raised = _papermill(nb_path, executed_path, plan, options)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what ran for inspection, leave the good runs alone
        failed = runs.move_to_failed(work, plan.key)
        log.warning("interrupted: the partial run is kept in %s; the cached runs are unchanged", failed)
        raise
    failure, message = _outcome(work, raised, options.require_metrics)
    if message is not None:
        _fail(work, plan.key, failure, message, raised)
    try:
        executed = nbformat.read(executed_path, as_version=4)
        write_atomic(executed_path, nbformat.writes(scrub_local_paths(executed)) + "\n")
        runs.publish(work, run_root / plan.key)
    except OSError as exc:  # e.g. the disk filled up: the finished run cannot be saved whole
        failed = runs.move_to_failed(work, plan.key) if work.exists() else None
        raise ExecutionFailed(
            f"the finished run could not be saved ({exc.strerror or exc}): free some disk space and build "
            f"again; the cached runs are unchanged" + (f"; this run is kept in {failed}" if failed else "")
        ) from exc


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a ``kill``, a closed terminal's session manager) handled as Ctrl-C while the notebook runs,
    so both take the same path: the kernel is shut down and the partial run kept as ``failed-<key>``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _papermill(nb_path: Path, executed_path: Path, plan: RunPlan, options: RunOptions) -> Exception | None:
    """Run papermill; returns what it raised (success is decided from the notebook, not from this)."""
    import papermill

    first_cell_done: list[bool] = []

    def after_cell(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if not first_cell_done:
            first_cell_done.append(True)
            failpoint("execute:kernel-running")

    try:
        papermill.execute_notebook(
            str(nb_path),
            str(executed_path),
            parameters=plan.injected,
            engine_name=ENGINE_NAME,
            kernel_name=options.kernel_name,
            progress_bar=options.progress_bar,
            log_output=options.log_output,
            cwd=str(executed_path.parent),
            timeout_func=timeout_by_tag(options.cell_timeout, options.training_timeout),
            kernel_env={DATA_ENV: str(plan.data_dir)} if plan.data_dir is not None else None,
            on_cell_executed=after_cell,
        )
    except Exception as exc:  # decided from the notebook; the cause goes into the message
        return exc
    return None


def _outcome(
    work: Path, raised: Exception | None, require_metrics: bool
) -> tuple[Failure | None, str | None]:
    """The failing cell (if the notebook shows one) and the failure message; (None, None) on success."""
    executed_path = work / EXECUTED_NAME
    if not executed_path.is_file():
        kind = type(raised).__name__ if raised else "no error"
        return None, f"papermill wrote no notebook ({kind}: {raised})"
    failure = find_failure(nbformat.read(executed_path, as_version=4))
    if failure is not None:
        return failure, describe_failure(failure) + _hint(failure)
    if raised is not None:
        return None, f"papermill raised {type(raised).__name__}: {raised}"
    if require_metrics and not (work / METRICS_NAME).is_file():
        return None, f"the notebook finished but wrote no {METRICS_NAME} into its out_dir"
    return None, None


def _hint(failure: Failure) -> str:
    if failure.reason.startswith(TIMEOUT_ERROR):
        return (
            "\n  a hung or too slow cell: raise the limit with --cell-timeout (cells tagged 'training': "
            "--training-timeout) if it only needs more time"
        )
    if failure.reason.startswith(DEAD_KERNEL_ERROR):
        return (
            "\n  the kernel was killed (out of memory?): close other programs, or use a smaller batch/model"
        )
    return ""


def _fail(work: Path, key: str, failure: Failure | None, message: str, raised: Exception | None) -> None:
    import papermill

    failed = runs.move_to_failed(work, key)
    partial = failed / EXECUTED_NAME
    detail = ""
    if raised is not None and not isinstance(raised, papermill.PapermillExecutionError):
        first = str(raised).strip().splitlines()[0] if str(raised).strip() else ""
        detail = f"\n  cause: {type(raised).__name__}: {first}"
    raise ExecutionFailed(
        f"notebook execution failed: {message}{detail}\n  partial notebook kept: {partial}",
        partial_path=partial if partial.is_file() else None,
        cell_index=failure.cell_index if failure else None,
        task=failure.task if failure else None,
    ) from raised


# ------------------------------------------------------------------------------------------------ ship
def ship_notebook(run_dir: Path, rendered: nbformat.NotebookNode) -> Path:
    """Write ``run_dir/submission.ipynb``: the run's code and outputs with the rendered markdown."""
    executed = nbformat.read(run_dir / EXECUTED_NAME, as_version=4)
    shipped = scrub_local_paths(restitch_markdown(executed, rendered))
    return write_atomic(run_dir / SHIPPED_NAME, nbformat.writes(shipped) + "\n")


def scrub_local_paths(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without papermill's record of this machine's paths (where it read and wrote the notebook)."""
    meta = nb.metadata.get("papermill")
    if meta:
        for key in PAPERMILL_PATH_KEYS:
            meta.pop(key, None)
    return nb


def restitch_markdown(
    executed: nbformat.NotebookNode, rendered: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The executed notebook with the rendered notebook's markdown (code cells and outputs kept).

    Code cells are matched in order and must have the same source (the cache key guarantees it); papermill's
    ``injected-parameters`` cell follows the ``parameters`` cell as in the executed notebook.
    """
    executed_code = [
        c for c in executed.cells if c.cell_type == "code" and PAPERMILL_ERROR_TAG not in cell_tags(c)
    ]
    cells = []
    for cell in rendered.cells:
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        if not executed_code:
            raise ValueError("the cached notebook has fewer code cells than the rendered one")
        done = executed_code.pop(0)
        # The parameters cell holds defaults only (not in the key: papermill injects the real values after
        # it): keep the executed one.
        if done.source != cell.source and PARAMETERS_TAG not in cell_tags(cell):
            raise ValueError(f"cached code cell differs from the rendered one: {cell.source[:60]!r}")
        cells.append(done)
        if executed_code and INJECTED_PARAMETERS_TAG in cell_tags(executed_code[0]):
            cells.append(executed_code.pop(0))
    if executed_code:
        raise ValueError("the cached notebook has more code cells than the rendered one")
    result = nbformat.from_dict(executed)
    result.cells = cells
    return result


# --------------------------------------------------------------------------------------------- helpers
def ensure_kernelspec(kernel_name: str = KERNEL_NAME) -> None:
    """Install the ipykernel kernelspec for this Python if ``kernel_name`` is not known to Jupyter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        log.info("installing the %s kernelspec (python -m ipykernel install --user)", kernel_name)
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--user", "--name", kernel_name],
            check=True,
            capture_output=True,
            text=True,
        )


class _QuietCellMarkers(logging.Filter):
    """Drop papermill's 'Executing Cell 12-----' / 'Ending Cell 12-----' lines: the progress bar says it.
    Its warnings stay (an unknown parameter is refused before papermill runs, by hw3build.notebook.parameters)."""

    QUIET = ("Executing Cell", "Ending Cell")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.QUIET)


def _setup_logging() -> None:
    # papermill logs the cells' outputs (log_output) on its logger at INFO: show them plainly, once.
    for name in ("papermill", "hw3build.notebook.execute"):
        _configure_logger(logging.getLogger(name))


def _configure_logger(logger: logging.Logger) -> None:
    if not any(isinstance(f, _QuietCellMarkers) for f in logger.filters):
        logger.addFilter(_QuietCellMarkers())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
