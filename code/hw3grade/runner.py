"""Check submissions in parallel, each in a process of its own with a time and a memory limit, so that a
hostile or broken submission costs its own row and nothing more. Progress on stderr (tqdm)."""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hw3build.submission.bounded import DEFAULT_LIMITS, Limits
from hw3build.submission.validate import FAIL
from tqdm import tqdm

from hw3grade.check import check_submission, warm_up
from hw3grade.discover import Submission
from hw3grade.rules import empty_cells, worst

GiB = 1 << 30
# tqdm's monitor thread would be alive in the parent at every fork; a child forked while it holds a lock
# could block on that lock. The bar updates from the main loop anyway.
tqdm.monitor_interval = 0


@dataclass(frozen=True)
class Budget:
    """What one submission's process may use; past either, its row says so."""

    seconds: float = 120.0
    memory_bytes: int = 2 * GiB  # address space added to what the process starts with
    recursion: int = 3000


DEFAULT_BUDGET = Budget()


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_all(
    submissions: list[Submission],
    evidence_dir: Path | None,
    jobs: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    budget: Budget = DEFAULT_BUDGET,
    progress: bool = True,
    check: Callable[[Submission, Path | None, Limits], dict[str, Any]] = check_submission,
) -> list[dict[str, Any]]:
    """A row per submission, in the order given, whatever happens to the processes."""
    jobs = max(1, jobs or default_jobs())
    warm_up()
    rows: dict[int, dict[str, Any]] = {}
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pending = list(enumerate(submissions))[::-1]
    running: dict[Connection, tuple[int, Any, float]] = {}
    with tqdm(total=len(submissions), desc="grading", unit="submission", disable=not progress) as bar:
        while pending or running:
            while pending and len(running) < jobs:
                index, submission = pending.pop()
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_child, args=(sender, check, submission, evidence_dir, limits, budget), daemon=True
                )
                process.start()
                sender.close()
                running[receiver] = (index, process, time.monotonic())
            for receiver in _ready(running, budget):
                index, process, started = running.pop(receiver)
                rows[index] = _collect(receiver, process, submissions[index], started, budget)
                bar.update(1)
    return [rows[i] for i in range(len(submissions))]


def _ready(running: dict[Connection, tuple[int, Any, float]], budget: Budget) -> list[Connection]:
    """The connections with a result, an exited process or an expired deadline."""
    now = time.monotonic()
    deadline = min(started + budget.seconds for _, _, started in running.values())
    ready = set(wait(list(running), timeout=max(0.0, deadline - now)))
    now = time.monotonic()
    return [
        receiver
        for receiver, (_, process, started) in running.items()
        if receiver in ready or now >= started + budget.seconds or not process.is_alive()
    ]


def _collect(
    receiver: Connection, process: Any, submission: Submission, started: float, budget: Budget
) -> dict[str, Any]:
    row = None
    if receiver.poll():
        try:
            row = receiver.recv()
        except (EOFError, OSError):  # it exited without a row
            row = None
        process.join(timeout=5)
    timed_out = row is None and time.monotonic() >= started + budget.seconds
    if process.is_alive():
        process.kill()
    process.join()
    receiver.close()
    if row is None and timed_out:
        row = failed_row(submission, "time", f"still running after {budget.seconds:.0f} s; stopped")
    elif row is None:
        row = failed_row(submission, "crash", f"the checking process died (exit code {process.exitcode})")
    row["seconds"] = round(time.monotonic() - started, 3)
    return row


def failed_row(submission: Submission, limit: str, detail: str) -> dict[str, Any]:
    """The row of a submission whose check did not finish."""
    cells = empty_cells()
    cells["limits"].merge(FAIL, f"{limit}: {detail}")
    rules = {key: {"status": cell.status, "detail": cell.detail} for key, cell in cells.items()}
    return {
        "key": submission.key,
        "group": submission.group,
        "upload": None,
        "ids": [],
        "facts": {},
        "hashes": {},
        "evidence": {},
        "rules": rules,
        "status": worst(cells),
    }


def _child(
    sender: Connection,
    check: Callable[[Submission, Path | None, Limits], dict[str, Any]],
    submission: Submission,
    evidence_dir: Path | None,
    limits: Limits,
    budget: Budget,
) -> None:
    _limit_memory(budget.memory_bytes)
    sys.setrecursionlimit(budget.recursion)
    try:
        row = check(submission, evidence_dir, limits)
    except MemoryError:
        row = failed_row(submission, "memory", f"over {budget.memory_bytes / GiB:.1f} GiB while checking")
    except BaseException as exc:  # a bug of ours must still give a row, with what to report
        row = failed_row(submission, "crash", f"{type(exc).__name__}: {exc}")
        row["traceback"] = traceback.format_exc(limit=8)
    sender.send(row)
    sender.close()


def _limit_memory(extra: int) -> None:
    """Cap the address space at what the process already maps plus ``extra``."""
    try:
        with open("/proc/self/statm") as stream:
            mapped = int(stream.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
    except (OSError, ValueError):  # not Linux: the timeout still holds
        pass
