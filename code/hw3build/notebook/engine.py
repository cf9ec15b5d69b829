"""The papermill engine the build executes with: papermill's nbclient engine plus three things.

- **Per-cell time limits by tag.** nbclient's ``timeout_func`` gives each cell its limit: cells tagged
  ``training`` get the long one (sized by profile), every other cell the short one.
- **The cell that stopped the run.** When a cell runs past its limit or the kernel dies (killed for
  memory, SIGKILL), nbclient raises and papermill marks the cell "completed" with no error, so the
  notebook would point at the next cell. Here that cell gets an error output (``CellTimeoutError`` /
  ``DeadKernelError``, see :mod:`hw3build.failures`) and papermill's failed status before the exception
  goes on.
- **The kernel's environment.** ``kernel_env`` is added to the kernel's environment: the data folder
  reaches the notebook as ``HW3_DATA_DIR`` instead of as a parameter, so no local path is written into it.

Registered with papermill as :data:`ENGINE_NAME` (papermill's own extension point for engines).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import nbformat
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.utils import remove_args

from hw3build.failures import DEAD_KERNEL_ERROR, TIMEOUT_ERROR
from hw3build.notebook.schema import TRAINING_TAG, cell_tags

ENGINE_NAME = "hw3build"
log = logging.getLogger("papermill")


def timeout_by_tag(cell_timeout: int | None, training_timeout: int | None) -> Callable[[Any], int | None]:
    """nbclient's ``timeout_func``: the cell's limit in seconds (None: no limit)."""

    def timeout_of(cell: Any) -> int | None:
        return training_timeout if TRAINING_TAG in cell_tags(cell) else cell_timeout

    return timeout_of


def mark_stopped(cell: Any, exc: BaseException, limit_s: int | None) -> None:
    """Give ``cell`` the error output that says why the run stopped there."""
    if isinstance(exc, CellTimeoutError):
        name = TIMEOUT_ERROR
        value = f"the cell ran past its time limit of {limit_s} s and was stopped"
    else:
        name = DEAD_KERNEL_ERROR
        value = "the kernel died while running this cell (killed for memory, or by a signal)"
    cell.setdefault("outputs", []).append(
        nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[f"{name}: {value}"])
    )


class StopMarkingClient(PapermillNotebookClient):
    """papermill's client, marking the cell that was running when the run had to stop."""

    async def async_execute_cell(
        self, cell: Any, cell_index: int, execution_count: int | None = None, store_history: bool = True
    ) -> Any:
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except (CellTimeoutError, DeadKernelError) as exc:
            mark_stopped(cell, exc, self._get_timeout(cell))
            self.nb_man.cell_exception(cell, cell_index=cell_index, exception=exc)
            raise

    execute_cell = run_sync(async_execute_cell)


class Engine(NBClientEngine):
    """papermill's nbclient engine with :class:`StopMarkingClient` and ``kernel_env``."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        kernel_env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        client = StopMarkingClient(
            nb_man,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=log,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            **kwargs,
        )
        if kernel_env:
            return client.execute(env={**os.environ, **kernel_env})
        return client.execute()


papermill_engines.register(ENGINE_NAME, Engine)
