"""``--rerun``: execute each submitted notebook again with papermill, in a temporary folder with a time
limit, and compare the test perplexity it prints with the one the submission reports. Meant for a staff
machine with a GPU; on a CPU the estimate is printed first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from hw3grade.facts import TEST_PPL, notebook_output_text

# within this relative difference the re-run's test perplexity counts as the reported one (seeds, kernels)
TOLERANCE = 0.02


def has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def estimate(rows: list[dict[str, Any]], seconds_each: float) -> str:
    """What the re-runs will take at most, and what the submissions' own runs took (papermill's record)."""
    notebooks = [row for row in rows if row.get("evidence", {}).get("ipynb")]
    recorded = sum(float(row.get("facts", {}).get("run_seconds") or 0) for row in notebooks)
    device = "a GPU" if has_gpu() else "the CPU (no GPU found: a full training run takes hours on a CPU)"
    return (
        f"re-running {len(notebooks)} notebooks on {device}: at most {len(notebooks) * seconds_each / 3600:.1f} h "
        f"({seconds_each:.0f} s each); their own runs took {recorded / 3600:.1f} h in all where recorded"
    )


def rerun_rows(rows: list[dict[str, Any]], out_dir: Path, seconds_each: float, echo=print) -> None:
    """Set ``row["rerun"]`` on every row with a notebook: status, the re-run's test perplexity, detail."""
    for row in rows:
        relative = row.get("evidence", {}).get("ipynb")
        if relative:
            row["rerun"] = rerun_one(out_dir / relative, row.get("facts", {}).get("test_ppl"), seconds_each)
            echo(f"  {row['key']}: {row['rerun']['status']} {row['rerun']['detail']}")


def rerun_one(notebook: Path, reported: float | None, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hw3grade-rerun-") as tmp:
        output = Path(tmp) / "rerun.ipynb"
        command = [
            sys.executable, "-m", "papermill", str(notebook), str(output),
            "--cwd", tmp, "--kernel", "python3", "--execution-timeout", str(int(seconds)), "--no-progress-bar",
        ]  # fmt: skip
        env = {**os.environ, "TQDM_DISABLE": "1", "HW3_OFFLINE": "1"}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env)
        except subprocess.TimeoutExpired:
            return {"status": "fail", "test_ppl": None, "detail": f"did not finish in {seconds:.0f} s"}
        if not output.is_file():
            return {"status": "fail", "test_ppl": None, "detail": f"papermill failed: {done.stderr[-300:]}"}
        found = TEST_PPL.findall(notebook_output_text(nbformat.read(str(output), as_version=4)))
    if done.returncode != 0:
        return {
            "status": "fail",
            "test_ppl": None,
            "detail": f"the re-run raised: {done.stderr.strip()[-300:]}",
        }
    if not found:
        return {"status": "warn", "test_ppl": None, "detail": "the re-run printed no test perplexity"}
    again = float(found[-1])
    if reported is None:
        return {"status": "warn", "test_ppl": again, "detail": f"re-run {again:g}; none reported"}
    close = abs(again - reported) <= TOLERANCE * reported
    return {
        "status": "ok" if close else "fail",
        "test_ppl": again,
        "detail": f"re-run {again:g}, reported {reported:g}"
        + ("" if close else f" (beyond {TOLERANCE:.0%})"),
    }
