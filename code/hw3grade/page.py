"""build/grade/index.html: one static page, a row per submission, failing ones first, every cell linked to
its evidence. The sorting and filtering are a few lines of JavaScript in the template (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hw3grade.evidence import environment
from hw3grade.rules import _RANK, RULES
from hw3grade.writers import ANSWER_KEYS

# rules whose evidence is in the PDF; the others point into the notebook
PDF_RULES = {"pdf", "headings", "latex"}
SYMBOL = {"ok": "\u2713", "fail": "\u2717", "warn": "!", "na": "\u2013", "flag": "\u2691"}


def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failing first, then warnings, then the rest; by key within each."""
    return sorted(rows, key=lambda row: (-_RANK[row["status"]], row["key"]))


def render(rows: list[dict[str, Any]], title: str = "hw3 submissions") -> str:
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            title=title,
            rows=[_view(row) for row in ordered(rows)],
            rules=RULES,
            answer_keys=ANSWER_KEYS,
            symbol=SYMBOL,
            rank=_RANK,
        )
    )


def write_page(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(render(rows), encoding="utf-8")


def _view(row: dict[str, Any]) -> dict[str, Any]:
    facts = row.get("facts", {})
    evidence = row.get("evidence", {})
    pdf, notebook = evidence.get("pdf"), evidence.get("notebook")
    cells = facts.get("answer_cells", {})
    rules = {}
    for key, _ in RULES:
        rule = row["rules"][key]
        link = pdf if key in PDF_RULES else notebook
        rules[key] = {**rule, "link": link}
    answers = {}
    for key in ANSWER_KEYS:
        page = facts.get("answer_pages", {}).get(key)
        cell = cells.get(key)
        answers[key] = {
            "page": page,
            "pdf_link": f"{pdf}#page={page}" if pdf and page else None,
            "cell_link": f"{notebook}#cell-{cell}" if notebook and cell is not None else None,
        }
    return {**row, "rules": rules, "answers": answers, "facts": facts, "flags": row.get("flags", [])}
