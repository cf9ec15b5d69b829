"""Run the rendered notebook with papermill, cached by everything that affects the run.

``execute_notebook(nb_path, parameters, run_root)``:
  1. reads the notebook's ``parameters`` cell, refuses parameter names it does not define (papermill would
     only warn), and normalises the values (hyper-parameters through ``HParams``, so ``lr=5`` == ``lr=5.0``);
  2. computes the cache key (:mod:`hw3build.cache`); if ``run_root/<key>/`` holds a successful run, returns
     it at once (``cache_hit=True``) after re-stitching the current markdown into the cached notebook;
  3. otherwise executes into ``run_root/.tmp-<key>-<pid>/`` (the notebook's working directory, with
     ``out_dir="."``, so metrics.json and figures/ land there and no local path leaks into the notebook),
     decides success from the executed notebook itself (not from papermill's return), and renames the folder
     to ``run_root/<key>/``. A failed run is moved to ``run_root/failed-<key>/`` and raises
     :class:`ExecutionFailed` naming the task and the cell; earlier good runs are never touched.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from hw3build import cache

log = logging.getLogger("hw3build.execute")

KERNEL_NAME = "python3"
EXECUTED_NAME = "executed.ipynb"
METRICS_NAME = "metrics.json"
KEY_INPUTS_NAME = "key_inputs.json"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


class ExecutionFailed(RuntimeError):
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


class ParameterError(ValueError):
    """A parameter the notebook does not define, or a value it cannot take."""


@dataclass(frozen=True)
class ExecutionResult:
    executed_path: Path
    metrics_path: Path
    out_dir: Path
    cache_hit: bool
    seconds: float
    key: str


@dataclass(frozen=True)
class Failure:
    """Where a run stopped: the cell (index among all cells), its first line, the task it belongs to."""

    cell_index: int
    first_line: str
    task: str
    reason: str


# --------------------------------------------------------------------------------------------- parameters
def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [cell for cell in nb.cells if cache.is_parameters_cell(cell)]
    if len(cells) != 1:
        raise ParameterError(
            f"the notebook must have exactly one cell tagged 'parameters', found {len(cells)}"
        )
    return cells[0]


def default_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The ``name = literal`` assignments of the ``parameters`` cell, evaluated safely."""
    source = parameters_cell(nb).source
    defaults: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            value = node.value
        else:
            raise ParameterError(
                f"the parameters cell may only hold 'name = literal' lines, not:\n{ast.unparse(node)}"
            )
        name = node.targets[0].id if isinstance(node, ast.Assign) else node.target.id
        try:
            defaults[name] = ast.literal_eval(value)
        except ValueError:
            raise ParameterError(f"parameter {name} = {ast.unparse(value)} is not a literal") from None
    return defaults


def resolve_parameters(nb: nbformat.NotebookNode, given: dict[str, Any]) -> dict[str, Any]:
    """The effective, typed parameters: the cell's defaults overridden by ``given``.

    Unknown names are refused. Hyper-parameters (fields of ``hw3.hparams.HParams`` that the cell defines)
    are validated and normalised by ``HParams`` so equal values hash equally whatever their Python type.
    """
    defaults = default_parameters(nb)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ParameterError(
            f"unknown notebook parameter(s) {unknown}; the parameters cell defines {sorted(defaults)}"
        )
    effective = {**defaults, **given}
    from hw3.hparams import HParams

    fields = {f.name for f in dataclasses.fields(HParams)}
    if fields <= set(effective):
        try:
            hparams = HParams.from_dict({name: effective[name] for name in fields})
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        effective.update(hparams.to_dict())
    if "device" in effective and effective["device"] not in ("auto", "cpu", "cuda"):
        raise ParameterError(f"device={effective['device']!r}; choose one of ['auto', 'cpu', 'cuda']")
    try:
        json.dumps(effective)
    except TypeError as exc:
        raise ParameterError(
            f"parameters must be JSON values (str, number, bool, None, list, dict): {exc}"
        ) from None
    return effective


# ------------------------------------------------------------------------------------------ success checks
def _tags(cell: Any) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _heading_of(nb: nbformat.NotebookNode, index: int) -> str:
    """The task a cell belongs to: the nearest preceding 'Task ...' heading, plus the nearest sub-heading."""
    nearest = task = None
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type != "markdown" or PAPERMILL_ERROR_TAG in _tags(cell):
            continue
        for line in reversed(cell.source.splitlines()):
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                nearest = nearest or text
                if text.lower().startswith("task") or text.lower().startswith("part"):
                    task = text
                    break
        if task:
            break
    if task and nearest and nearest != task:
        return f"{task} › {nearest}"
    return task or nearest or "(before the first heading)"


def find_failure(nb: nbformat.NotebookNode) -> Failure | None:
    """The first cell that shows the run did not complete, or None when the notebook is a success.

    Success (NOTES.md): no ``error`` output, every non-empty code cell has an execution count, and no cell
    has ``metadata.papermill.exception`` set. A timed-out or killed cell has no error output; it is the
    cell papermill left 'running', else the first non-empty code cell without a count.
    """
    candidates: list[tuple[int, str]] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or PAPERMILL_ERROR_TAG in _tags(cell):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            candidates.append((index, f"{errors[0].get('ename')}: {errors[0].get('evalue')}"))
            break
        papermill_meta = cell.get("metadata", {}).get("papermill", {})
        if papermill_meta.get("exception") is True:
            candidates.append((index, "the cell raised an exception"))
            break
        if papermill_meta.get("status") == "running":
            candidates.append((index, "the cell never finished (timeout or dead kernel)"))
            break
        if cell.source.strip() and cell.get("execution_count") is None:
            candidates.append((index, "the cell was never executed"))
            break
    if not candidates:
        return None
    index, reason = candidates[0]
    source = nb.cells[index].source.strip()
    first_line = source.splitlines()[0] if source else ""
    return Failure(cell_index=index, first_line=first_line, task=_heading_of(nb, index), reason=reason)


def describe_failure(failure: Failure) -> str:
    return f"{failure.task}: cell {failure.cell_index} ({failure.first_line[:80]!r}) failed: {failure.reason}"


# ------------------------------------------------------------------------------------------------ helpers
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


def restitch_markdown(
    executed: nbformat.NotebookNode, rendered: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The executed notebook with the rendered notebook's markdown (code cells and outputs kept).

    Code cells are matched in order and must have the same source (the cache key guarantees it); papermill's
    ``injected-parameters`` cell follows the ``parameters`` cell as in the executed notebook.
    """
    executed_code = [
        c for c in executed.cells if c.cell_type == "code" and PAPERMILL_ERROR_TAG not in _tags(c)
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
        # it), so e.g. a build with --data-dir and one without share a run; keep the executed one.
        if done.source != cell.source and "parameters" not in _tags(cell):
            raise ValueError(f"cached code cell differs from the rendered one: {cell.source[:60]!r}")
        cells.append(done)
        if executed_code and "injected-parameters" in _tags(executed_code[0]):
            cells.append(executed_code.pop(0))
    if executed_code:
        raise ValueError("the cached notebook has more code cells than the rendered one")
    result = nbformat.from_dict(executed)
    result.cells = cells
    return result


def _write_notebook_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def _is_complete_run(folder: Path, require_metrics: bool) -> bool:
    executed = folder / EXECUTED_NAME
    if not executed.is_file() or (require_metrics and not (folder / METRICS_NAME).is_file()):
        return False
    try:
        return find_failure(nbformat.read(executed, as_version=4)) is None
    except Exception:  # a damaged cache entry is a miss, never an error
        return False


def _resolve_data(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Point ``data_dir`` at the verified WikiText-2 folder the run will use, and hash its files."""
    if "data_dir" not in parameters:
        return parameters, None
    from hw3.download import wikitext2_dir

    folder = Path(wikitext2_dir(parameters["data_dir"])).resolve()
    return {**parameters, "data_dir": str(folder)}, cache.data_fingerprint(folder)


class _QuietCellMarkers(logging.Filter):
    """Drop papermill's 'Executing Cell 12-----' / 'Ending Cell 12-----' lines: the progress bar says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Executing Cell") or message.startswith("Ending Cell"))


def _setup_logging() -> None:
    # papermill logs the cells' outputs (log_output) on its logger at INFO: show them plainly, once.
    for name in ("papermill", "hw3build.execute"):
        _configure_logger(logging.getLogger(name))


def _configure_logger(logger: logging.Logger) -> None:
    if not any(isinstance(f, _QuietCellMarkers) for f in logger.filters):
        logger.addFilter(_QuietCellMarkers())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


# ---------------------------------------------------------------------------------------------------- run
def execute_notebook(
    nb_path: Path,
    parameters: dict[str, Any],
    run_root: Path,
    *,
    force: bool = False,
    progress_bar: bool = True,
    log_output: bool = True,
    cell_timeout: int | None = None,
    require_metrics: bool = True,
    kernel_name: str = KERNEL_NAME,
    on_key: Callable[[str, dict[str, Any]], None] | None = None,
) -> ExecutionResult:
    """Execute ``nb_path`` with ``parameters`` (see the module docstring); cached under ``run_root``.

    ``force`` re-runs even on a cache hit (the old run is replaced only once the new one succeeded).
    ``cell_timeout`` (seconds) fails a cell that runs longer. ``require_metrics``: a run without
    ``metrics.json`` in its out_dir is a failure.
    """
    started = time.monotonic()
    nb_path, run_root = Path(nb_path), Path(run_root)
    rendered = nbformat.read(nb_path, as_version=4)
    if "out_dir" in parameters:
        raise ParameterError("out_dir is chosen by execute_notebook (the run folder); do not pass it")
    effective = resolve_parameters(rendered, parameters)
    effective, data = _resolve_data(effective)
    if "out_dir" in effective:
        effective["out_dir"] = "."  # the run folder is the kernel's working directory
    inputs = cache.key_inputs(
        rendered, effective, data, cache.environment_fingerprint(effective.get("device", "auto"))
    )
    key = cache.cache_key(inputs)
    if on_key is not None:
        on_key(key, inputs)
    _setup_logging()
    run_root.mkdir(parents=True, exist_ok=True)
    final = run_root / key

    if not force and _is_complete_run(final, require_metrics):
        executed = nbformat.read(final / EXECUTED_NAME, as_version=4)
        stitched = restitch_markdown(executed, rendered)
        if stitched != executed:
            _write_notebook_atomic(stitched, final / EXECUTED_NAME)
        log.info("cache hit: %s", final)
        return ExecutionResult(
            final / EXECUTED_NAME, final / METRICS_NAME, final, True, time.monotonic() - started, key
        )

    reasons = explain_miss(run_root, inputs)
    if reasons:
        log.info("no cached run for these inputs; the latest run differs in: %s", "; ".join(reasons))
    ensure_kernelspec(kernel_name)
    work = run_root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / KEY_INPUTS_NAME).write_text(json.dumps(inputs, indent=1, sort_keys=True), encoding="utf-8")
    executed_path = work / EXECUTED_NAME
    raised: BaseException | None = None
    import papermill

    try:
        papermill.execute_notebook(
            str(nb_path),
            str(executed_path),
            parameters=effective,
            kernel_name=kernel_name,
            progress_bar=progress_bar,
            log_output=log_output,
            cwd=str(work),
            execution_timeout=cell_timeout,
        )
    except KeyboardInterrupt:  # Ctrl-C: keep what ran for inspection, leave the good runs alone
        _move_to_failed(work, run_root / f"failed-{key}")
        raise
    except Exception as exc:  # decided below from the notebook itself; keep the cause for the message
        raised = exc

    failure_message = None
    failure: Failure | None = None
    if executed_path.is_file():
        executed = nbformat.read(executed_path, as_version=4)
        failure = find_failure(executed)
        if failure is None and raised is not None:
            failure_message = f"papermill raised {type(raised).__name__}: {raised}"
        elif failure is not None:
            failure_message = describe_failure(failure)
    else:
        failure_message = (
            f"papermill wrote no notebook ({type(raised).__name__ if raised else 'no error'}: {raised})"
        )
    if failure_message is None and require_metrics and not (work / METRICS_NAME).is_file():
        failure_message = f"the notebook finished but wrote no {METRICS_NAME} into its out_dir"

    if failure_message is not None:
        failed = _move_to_failed(work, run_root / f"failed-{key}")
        partial = failed / EXECUTED_NAME
        detail = ""
        if raised is not None and not isinstance(raised, papermill.PapermillExecutionError):
            detail = f"\n  cause: {type(raised).__name__}: {str(raised).strip().splitlines()[0] if str(raised).strip() else ''}"
        raise ExecutionFailed(
            f"notebook execution failed: {failure_message}{detail}\n  partial notebook kept: {partial}",
            partial_path=partial if partial.is_file() else None,
            cell_index=failure.cell_index if failure else None,
            task=failure.task if failure else None,
        ) from raised

    _publish(work, final)
    return ExecutionResult(
        final / EXECUTED_NAME, final / METRICS_NAME, final, False, time.monotonic() - started, key
    )


def explain_miss(run_root: Path, inputs: dict[str, Any]) -> list[str]:
    """How ``inputs`` differ from those of the most recent successful run under ``run_root`` (empty if none)."""
    previous = sorted(
        (
            p
            for p in Path(run_root).glob(f"*/{KEY_INPUTS_NAME}")
            if not p.parent.name.startswith((".", "failed-"))
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not previous:
        return []
    try:
        old = json.loads(previous[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return cache.explain_difference(old, inputs)


def _move_to_failed(work: Path, failed: Path) -> Path:
    """Keep a failed run's folder (its partial notebook) as ``failed-<key>``, replacing an older failure."""
    shutil.rmtree(failed, ignore_errors=True)
    os.replace(work, failed)
    return failed


def _publish(work: Path, final: Path) -> None:
    """Move the finished run into place; an older run under the same key is removed only afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
