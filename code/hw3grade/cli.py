"""``python -m hw3grade SOURCE... [--out DIR] [--jobs N] [--rerun]``: discover, check in parallel, flag
across submissions, write the page, grades.csv and one JSON per submission."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hw3build.submission.bounded import DEFAULT_LIMITS, LimitExceeded, Unreadable

from hw3grade.cross import flag_rows
from hw3grade.discover import discover
from hw3grade.page import write_page
from hw3grade.rerun import estimate, rerun_rows
from hw3grade.runner import DEFAULT_BUDGET, Budget, default_jobs, run_all
from hw3grade.writers import write_csv, write_json


def grade(
    sources: list[str | Path],
    out_dir: str | Path = "build/grade",
    jobs: int | None = None,
    rerun: bool = False,
    rerun_seconds: float = 3600.0,
    budget: Budget = DEFAULT_BUDGET,
    progress: bool = True,
    echo=print,
) -> list[dict[str, Any]]:
    """Grade every submission in ``sources`` into ``out_dir``; returns the rows (failing ones included)."""
    out = Path(out_dir)
    evidence = out / "evidence"
    for stale in (evidence, out / "json"):
        shutil.rmtree(stale, ignore_errors=True)
    evidence.mkdir(parents=True, exist_ok=True)
    submissions = discover(list(sources), DEFAULT_LIMITS)
    started = time.monotonic()
    rows = run_all(submissions, evidence, jobs=jobs, budget=budget, progress=progress)
    elapsed = time.monotonic() - started
    flag_rows(rows)
    if rerun:
        echo(estimate(rows, rerun_seconds))
        rerun_rows(rows, out, rerun_seconds, echo=echo)
    write_csv(rows, out / "grades.csv")
    write_json(rows, out / "json")
    write_page(rows, out / "index.html")
    failing = sum(row["status"] == "fail" for row in rows)
    flagged = sum(bool(row["flags"]) for row in rows)
    echo(
        f"{len(rows)} submissions in {elapsed:.1f} s: {failing} failing, {flagged} flagged for a human; "
        f"see {out / 'index.html'}"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw3grade", description="Check every submission of a Moodle download into one page."
    )
    parser.add_argument(
        "sources", nargs="+", help="the Moodle archive (zip), a folder of group folders, or files"
    )
    parser.add_argument("--out", default="build/grade", help="output folder (default: build/grade)")
    parser.add_argument(
        "--jobs", type=int, default=None, help=f"parallel checks (default: the cores, {default_jobs()})"
    )
    parser.add_argument(
        "--timeout", type=float, default=Budget.seconds, help="seconds per submission's check"
    )
    parser.add_argument("--rerun", action="store_true", help="re-execute each notebook with papermill")
    parser.add_argument("--rerun-timeout", type=float, default=3600.0, help="seconds per re-run notebook")
    args = parser.parse_args(argv)
    try:
        grade(
            args.sources,
            args.out,
            jobs=args.jobs,
            rerun=args.rerun,
            rerun_seconds=args.rerun_timeout,
            budget=Budget(seconds=args.timeout),
        )
    except (FileNotFoundError, Unreadable, LimitExceeded) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
