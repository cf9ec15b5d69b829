"""Small, fast stand-ins for the build's products: an executed notebook, a text PDF and submission zips.

The PDF writer emits a minimal PDF-1.4 file with Helvetica text (one line per string) that pypdf extracts
like any other PDF, so the validator's PDF rules can be tested without TeX.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nbformat
from hw3build.submission.validate import HEADINGS
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

# IDs with a valid Israeli check digit (and not the assignment's placeholders).
ID1 = "123456782"
ID2 = "012345674"
STEM = f"ece046211_hw3_{ID1}_{ID2}"


def heading_lines() -> list[str]:
    """Every question and task heading as the report prints it, in the assignment's order."""
    return [f"{labels[0]} - {title}" for labels, title in HEADINGS]


def pdf_bytes(pages: Sequence[Sequence[str]]) -> bytes:
    """A minimal PDF: one page per list of lines, Helvetica 11 pt."""

    def escape(line: str) -> bytes:
        return (
            line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")
        )  # WinAnsiEncoding

    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    next_id = 4
    for lines in pages:
        text = b" T* ".join(b"(" + escape(line) + b") Tj" for line in lines)
        stream = b"BT /F1 11 Tf 14 TL 50 800 Td " + text + b" ET"
        content_id, page_id = next_id, next_id + 1
        next_id += 2
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        kids.append(page_id)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def good_pdf_pages(extra: Iterable[str] = ()) -> list[list[str]]:
    """A report-like PDF: cover, then every heading on its own page with some rendered-looking text."""
    pages = [["ECE 046211 Deep Learning - HW3", "Alice Levi and Bob Cohen", *extra]]
    for line in heading_lines():
        pages.append([line, "SA(X) = softmax(QK^T / sqrt(D)) V", "test perplexity 171.7"])
    return pages


def executed_notebook(
    students_line: str = "Alice Levi, alice@campus.technion.ac.il",
) -> nbformat.NotebookNode:
    """A small notebook as papermill leaves it after a successful run."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papermill"] = {"exception": False}
    nb.cells = [
        new_markdown_cell(f"# HW3\n\n{students_line}"),
        new_code_cell("profile = 'full'", metadata={"tags": ["parameters"]}, execution_count=1),
        new_markdown_cell("## Task 1 - Loading and Observing the Data"),
        new_code_cell(
            "print(train_data.shape)  # [time steps, batch]",
            execution_count=2,
            outputs=[new_output("stream", name="stdout", text="torch.Size([104335, 20])\n")],
        ),
        new_code_cell(
            "def train(model):\n    print('epoch done')\n    return model",
            execution_count=3,
        ),
        new_code_cell(
            "ntokens",
            execution_count=4,
            outputs=[new_output("execute_result", data={"text/plain": "28782"}, execution_count=4)],
        ),
        new_code_cell("", execution_count=None),  # an empty cell never gets a count; it must not fail
    ]
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"  # nbformat draws random ids; fixed ones keep the fixture deterministic
    return nb


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip with exactly ``members`` (for broken submissions the real packager refuses to make)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def submission_zip(
    folder: Path,
    *,
    ids: tuple[str, str] = (ID1, ID2),
    nb: nbformat.NotebookNode | None = None,
    pages: list[list[str]] | None = None,
    zip_name: str | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A submission zip made of the fixtures, with every piece replaceable to break one rule at a time."""
    stem = f"ece046211_hw3_{ids[0]}_{ids[1]}"
    members = {
        f"{stem}.ipynb": notebook_bytes(nb if nb is not None else executed_notebook()),
        f"{stem}.pdf": pdf_bytes(pages if pages is not None else good_pdf_pages()),
        **(extra or {}),
    }
    return write_zip(folder / (zip_name or f"{stem}.zip"), members)


_HOLDER = """
import sys
from hw3tools.locks import build_lock
with build_lock(sys.argv[1], timeout=0):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def lock_held_elsewhere(build_dir: Path) -> Iterator[subprocess.Popen]:
    """Another process holds ``build_dir``'s build lock until the block ends (or the test kills it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(build_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            holder.stdin.close()
        holder.wait(timeout=60)
