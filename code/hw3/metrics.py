"""The record of one training run, `metrics.json`: one schema, written by the notebook and by
`python -m hw3tools.train` (both through `write_metrics`), checked wherever it is read
(`read_metrics`).

A record holds what was asked (`profile`, `hparams`), what ran (`run`: device, precision,
optimizer, threads, torch version), on what (`data`: the fingerprint of `hw3.data.summary`), and
what came out: the per-epoch `history`, the best epoch, and, once the run has finished, the test
loss and perplexity of the best model and its generated `sentences`. `answers` holds values the
notebook prints for the assignment's questions (shapes, counts), for the report to quote.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from hw3.files import write_json_atomic

METRICS_NAME = "metrics.json"
METRICS_SCHEMA = 2

# key -> accepted types, for every record (a run stopped early included)
FIELDS: dict[str, tuple[type, ...]] = {
    "schema": (int,),
    "profile": (str,),
    "hparams": (dict,),
    "run": (dict,),
    "data": (dict,),
    "history": (list,),
    "best_epoch": (int,),
    "best_val_loss": (float, int),
    "best_val_ppl": (float, int),
    "interrupted": (bool,),
    "timings": (dict,),
}
# and, once the best model has been tested
FINISHED_FIELDS: dict[str, tuple[type, ...]] = {
    "test_loss": (float, int),
    "test_ppl": (float, int),
    "sentences": (list,),
}
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "figures": (list,),
    "answers": (dict,),
    "sense_check": (dict,),
}
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_ppl", "lr", "seconds")


# the largest loss whose exponential a float holds; a larger one means a diverged run
MAX_FINITE_LOSS = math.log(sys.float_info.max)


def perplexity(loss: float) -> float:
    """exp(loss), the perplexity of a mean cross-entropy; infinite past what a float holds."""
    return math.exp(loss) if loss <= MAX_FINITE_LOSS else math.inf


class MetricsError(ValueError):
    """A `metrics.json` that is missing, unreadable or not of this schema (the message says
    which)."""


def metrics_record(
    *,
    profile: str,
    hparams: dict[str, Any],
    run: dict[str, Any],
    data: dict[str, Any],
    fit_result: Any,
    total_seconds: float,
    test_loss: float | None = None,
    sentences: list[str] | None = None,
    **optional: Any,
) -> dict[str, Any]:
    """The record of a run: `fit_result` is what `hw3.train.fit` returned; `test_loss` and
    `sentences` are given once the best model has been tested; `optional` holds the keys of
    `OPTIONAL_FIELDS` (`figures`, `answers`, `sense_check`)."""
    unknown = sorted(set(optional) - set(OPTIONAL_FIELDS))
    if unknown:
        raise MetricsError(f"unknown metrics field(s) {unknown}; known: {sorted(OPTIONAL_FIELDS)}")
    best = fit_result.best_val_loss
    record: dict[str, Any] = {
        "schema": METRICS_SCHEMA,
        "profile": profile,
        "hparams": dict(hparams),
        "run": dict(run),
        "data": dict(data),
        "history": [dict(row) for row in fit_result.history],
        "best_epoch": fit_result.best_epoch,
        "best_val_loss": best,
        "best_val_ppl": perplexity(best),
        "interrupted": fit_result.interrupted,
        "timings": {"train_seconds": fit_result.train_seconds, "total_seconds": total_seconds},
    }
    if test_loss is not None:
        record.update(
            test_loss=test_loss, test_ppl=perplexity(test_loss), sentences=list(sentences or [])
        )
    record.update(optional)
    return record


def check_metrics(record: Any, *, finished: bool = True, source: str = "metrics") -> dict[str, Any]:
    """Return `record` if it follows the schema (with the test results when `finished`), else
    raise `MetricsError` naming the first problem."""
    if not isinstance(record, dict):
        raise MetricsError(f"{source}: expected a JSON object, got {type(record).__name__}")
    if record.get("schema") != METRICS_SCHEMA:
        raise MetricsError(
            f"{source}: schema {record.get('schema')!r}, expected {METRICS_SCHEMA} "
            "(written by another version of hw3: run it again)"
        )
    fields = {**FIELDS, **(FINISHED_FIELDS if finished else {})}
    for key, types in fields.items():
        if key not in record:
            raise MetricsError(f"{source}: missing {key!r}")
        _check_type(record[key], types, f"{source}: {key!r}")
    for key, types in OPTIONAL_FIELDS.items():
        if key in record:
            _check_type(record[key], types, f"{source}: {key!r}")
    for number, row in enumerate(record["history"], start=1):
        missing = [k for k in HISTORY_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise MetricsError(f"{source}: history row {number} lacks {missing}")
    return record


def write_metrics(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Check `record` and write it to `out_dir/metrics.json` atomically; returns the path."""
    check_metrics(record, finished="test_loss" in record, source="the record to write")
    return write_json_atomic(Path(out_dir) / METRICS_NAME, record)


def read_metrics(path: str | Path, *, finished: bool = True) -> dict[str, Any]:
    """The record in `path` (a `metrics.json`), checked against the schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MetricsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise MetricsError(f"{path}: not valid JSON ({exc}); truncated or edited?") from None
    return check_metrics(record, finished=finished, source=str(path))


def _check_type(value: Any, types: tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in types:
        raise MetricsError(
            f"{what} must be {' or '.join(t.__name__ for t in types)}, got {value!r}"
        )
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise MetricsError(f"{what} must be {names}, got {type(value).__name__}")
