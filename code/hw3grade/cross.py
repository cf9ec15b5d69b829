"""Checks across submissions: a student ID in two groups; notebooks, PDFs or outputs identical between
groups. They are flags for a human (a resubmission, a shared template, a copy), never a failure."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

WHAT = {"notebook": "notebook identical to", "pdf": "PDF identical to", "outputs": "outputs identical to"}


def flag_rows(rows: list[dict[str, Any]]) -> None:
    """Set ``row["flags"]`` (a list of sentences) on every row."""
    for row in rows:
        row["flags"] = []
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for student_id in dict.fromkeys(row.get("ids") or []):
            by_id[student_id].append(row)
    for student_id, holders in by_id.items():
        for row in holders:
            others = [other["key"] for other in holders if other is not row]
            if others:
                row["flags"].append(f"ID {student_id} is also in {', '.join(others)}")
    for kind, sentence in WHAT.items():
        by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            digest = row.get("hashes", {}).get(kind)
            if digest:
                by_hash[digest].append(row)
        for holders in by_hash.values():
            for row in holders:
                others = [other["key"] for other in holders if other is not row]
                if others and not (kind == "outputs" and _same_notebook(row, holders)):
                    row["flags"].append(f"{sentence} {', '.join(others)}")


def _same_notebook(row: dict[str, Any], holders: list[dict[str, Any]]) -> bool:
    """Identical outputs are not worth a second flag when the notebooks are identical anyway."""
    digest = row.get("hashes", {}).get("notebook")
    return all(other.get("hashes", {}).get("notebook") == digest for other in holders)
