"""The files a row links to: the submission's PDF (opened at a page with ``#page=N``) and its notebook as a
static page with an anchor per cell. Submissions are untrusted: the notebook page shows text escaped and
PNG/JPEG images only (no HTML, SVG or JavaScript output of theirs runs in the grader's browser)."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import jinja2
import nbformat

from hw3grade.facts import output_text

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "grade"
_SAFE_IMAGES = ("image/png", "image/jpeg")


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def slug(key: str) -> str:
    """A folder name for ``key``: ASCII letters, digits and dashes, made unique by a short hash."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")[:40] or "submission"
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def write_evidence(
    evidence_dir: Path, key: str, nb: nbformat.NotebookNode | None, pdf: bytes | None
) -> dict[str, str]:
    """Write the evidence of one submission under ``evidence_dir``; returns paths relative to its parent."""
    folder = evidence_dir / slug(key)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    if pdf is not None:
        (folder / "submission.pdf").write_bytes(pdf)
        written["pdf"] = f"{evidence_dir.name}/{folder.name}/submission.pdf"
    if nb is not None:
        nbformat.write(nb, str(folder / "submission.ipynb"))
        written["ipynb"] = f"{evidence_dir.name}/{folder.name}/submission.ipynb"
        html = environment().get_template("notebook.html.j2").render(key=key, cells=_cells(nb))
        (folder / "notebook.html").write_text(html, encoding="utf-8")
        written["notebook"] = f"{evidence_dir.name}/{folder.name}/notebook.html"
    return written


def _cells(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    cells = []
    for index, cell in enumerate(nb.cells):
        images = []
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for mime in _SAFE_IMAGES:
                data = output.get("data", {}).get(mime)
                if isinstance(data, str) and _is_base64(data):
                    images.append(f"data:{mime};base64,{''.join(data.split())}")
        cells.append(
            {
                "index": index,
                "type": cell.cell_type,
                "count": cell.get("execution_count"),
                "source": cell.source,
                "text": output_text(cell),
                "errors": [
                    o.get("ename", "") for o in cell.get("outputs", []) if o.get("output_type") == "error"
                ],
                "images": images,
            }
        )
    return cells


def _is_base64(data: str) -> bool:
    try:
        base64.b64decode("".join(data.split()), validate=True)
    except ValueError:
        return False
    return True
