"""The build record (``build/build.json``): what produced this submission.

Two parts, because the PDF must hold only what the inputs determine (same inputs, same bytes):
  - :func:`collect_record`, given to the report's appendix: versions (Python, torch, the notebook and TeX
    tool chain), the machine and the device the notebook ran on, the data (``hw3.data.summary``:
    vocabulary and token-id hashes, plus the raw files' sha256), the hyper-parameters and seed, the
    execution cache key, the results, the git commit, and ``source_date_epoch`` (when the training run
    finished: the date the PDF carries);
  - :func:`build_facts`, this build's own clock time, stage durations, cache hit and zip, written to
    ``build/build.json`` under ``"build"`` and never printed in the PDF.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hw3.download import sha256_file
from hw3.files import write_json_atomic
from hw3tools.repo import git_state

from hw3build.draft import draft_reasons
from hw3build.report.latex import REQUIRED_TOOLS
from hw3build.submission.config import SubmissionConfig

RECORD_SCHEMA = 1
PYTHON_PACKAGES = (
    "hw3", "torch", "numpy", "matplotlib", "tqdm", "papermill", "nbclient", "nbconvert", "nbformat",
    "ipykernel", "jinja2", "pypdf", "portalocker", "invoke",
)  # fmt: skip


def package_versions(names: tuple[str, ...] = PYTHON_PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tool_version(tool: str) -> str | None:
    """First line of ``<tool> --version`` (None when the tool is missing or fails)."""
    if shutil.which(tool) is None:
        return None
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines[0] if lines else None


def data_record(metrics: Mapping[str, Any] | None, data_dir: Path | None) -> dict[str, Any]:
    """The data summary: taken from metrics.json when the notebook wrote it (same run, no recomputation),
    else computed with ``hw3.data.summary`` from ``data_dir``; plus the sha256 of each raw file of
    ``data_dir``. Without ``data_dir`` nothing is looked up (the record must never trigger a download)."""
    from hw3.download import SPLIT_FILES

    result: dict[str, Any] = {}
    if metrics and metrics.get("data"):
        result["summary"] = dict(metrics["data"])
        result["summary_source"] = "metrics.json"
    elif data_dir is not None and all((data_dir / f).is_file() for f in SPLIT_FILES.values()):
        from hw3.data import summary

        result["summary"] = summary(data_dir)
        result["summary_source"] = "hw3.data.summary"
    if data_dir is not None:
        result["files"] = {
            name: {"sha256": sha256_file(data_dir / filename), "bytes": (data_dir / filename).stat().st_size}
            for name, filename in SPLIT_FILES.items()
            if (data_dir / filename).is_file()
        }
    return result


def build_time() -> str:
    """UTC time of the build: ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_finished_epoch(executed_nb: str | Path) -> int | None:
    """When the training run finished (papermill's ``end_time`` in the executed notebook), in seconds since
    the epoch: the run's own record, so every build from the same run dates its PDF the same."""
    import nbformat

    try:
        end = nbformat.read(executed_nb, as_version=4).metadata.get("papermill", {}).get("end_time")
        moment = dt.datetime.fromisoformat(str(end))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


def collect_record(
    config: SubmissionConfig,
    *,
    metrics: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
    repo_dir: str | Path | None = None,
    data_dir: Path | None = None,
    source_date_epoch: int | None = None,
) -> dict[str, Any]:
    """Everything the appendix shows, all of it determined by the inputs. ``execution`` is the run's cache
    key; ``metrics`` the notebook's metrics.json (device and data fingerprint come from it); ``data_dir``
    the WikiText-2 folder the run used (its files are hashed; default: the config's)."""
    metrics = metrics or {}
    reasons = draft_reasons(
        metrics.get("profile", config.profile), metrics.get("hparams") or config.hparams.to_dict()
    )
    record = {
        "schema": RECORD_SCHEMA,
        "profile": config.profile,
        "draft": bool(reasons),
        "draft_reasons": reasons,
        "students": [{"name": s.name, "email": s.email, "id": s.id} for s in config.students],
        "placeholders": config.has_placeholders,
        "warnings": list(config.warnings),
        "hparams": config.hparams.to_dict(),
        "hparams_overrides": dict(config.hparams_overrides),
        "seed": config.hparams.seed,
        "device": {
            "requested": config.device,
            "used": metrics.get("run", {}).get("device"),
            "torch_version_in_notebook": metrics.get("run", {}).get("torch_version"),
        },
        "versions": package_versions(),
        "tex": {tool: tool_version(tool) for tool in REQUIRED_TOOLS},
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
        },
        "data": data_record(metrics, data_dir if data_dir is not None else config.data_dir),
        "execution": dict(execution or {}),
        "results": {
            key: metrics.get(key)
            for key in ("best_epoch", "best_val_loss", "best_val_ppl", "test_loss", "test_ppl")
            if key in metrics
        },
        "git": git_state(repo_dir) if repo_dir is not None else {"commit": None, "dirty": None},
    }
    if source_date_epoch is not None:
        record["source_date_epoch"] = source_date_epoch
    return record


def build_facts(
    *, timings: Mapping[str, float], cache_hit: bool | None, execution_seconds: float | None
) -> dict[str, Any]:
    """This build's own facts (``build.json``'s ``"build"``; never in the PDF): when, how long, cache hit."""
    return {
        "built_at": build_time(),
        "timings": {name: round(float(seconds), 3) for name, seconds in timings.items()},
        "cache_hit": cache_hit,
        "execution_seconds": None if execution_seconds is None else round(float(execution_seconds), 3),
    }


def write_record(record: Mapping[str, Any], path: str | Path) -> Path:
    """Write the build record (``build/build.json``)."""
    return write_json_atomic(path, dict(record))
