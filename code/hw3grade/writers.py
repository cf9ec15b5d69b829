"""grades.csv (one column per rule, then the facts) and one JSON file per submission."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hw3build.submission.assignment import QUESTION_PARTS, TASKS

from hw3grade.evidence import slug
from hw3grade.rules import RULE_KEYS

ANSWER_KEYS = tuple(key.upper() for key, _ in QUESTION_PARTS) + tuple(task.short for task in TASKS)
FACT_COLUMNS = ("students", "id numbers", "test ppl", "validation curve", "PDF pages", "hyper-parameters")


def csv_columns() -> list[str]:
    return [
        "key",
        "upload",
        "status",
        *RULE_KEYS,
        *FACT_COLUMNS,
        *(f"page {k}" for k in ANSWER_KEYS),
        "flags",
        "rerun",
    ]


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    facts = row.get("facts", {})
    values: dict[str, Any] = {"key": row["key"], "upload": row.get("upload") or "", "status": row["status"]}
    for key in RULE_KEYS:
        rule = row["rules"][key]
        values[key] = rule["status"] + (f": {rule['detail']}" if rule["detail"] else "")
    values["students"] = "; ".join(f"{s['name']} ({s['id']})".strip() for s in facts.get("students", []))
    values["id numbers"] = " ".join(row.get("ids") or [])
    values["test ppl"] = "" if facts.get("test_ppl") is None else facts["test_ppl"]
    values["validation curve"] = " ".join(f"{v:g}" for v in facts.get("valid_curve", []))
    values["PDF pages"] = "" if facts.get("pdf_pages") is None else facts["pdf_pages"]
    values["hyper-parameters"] = " ".join(f"{k}={v}" for k, v in facts.get("hparams", {}).items())
    for key in ANSWER_KEYS:
        values[f"page {key}"] = facts.get("answer_pages", {}).get(key, "")
    values["flags"] = "; ".join(row.get("flags", []))
    rerun = row.get("rerun")
    values["rerun"] = f"{rerun['status']}: {rerun['detail']}" if rerun else ""
    return {key: _inert(value) for key, value in values.items()}


def _inert(value: Any) -> Any:
    """A text a spreadsheet would run as a formula (a group may name itself "=cmd|...") kept as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=csv_columns())
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_row(row))


def write_json(rows: list[dict[str, Any]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        (folder / f"{slug(row['key'])}.json").write_text(
            json.dumps(row, indent=2, ensure_ascii=False, sort_keys=True), encoding="utf-8"
        )
