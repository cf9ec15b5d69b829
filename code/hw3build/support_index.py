"""The report appendix's index of the notebook's support code: for each support cell (tag ``support``), its
number, what it is for (its opening comment), and each definition's signature and one-line purpose (the
first paragraph of its docstring). The code itself is in the submitted notebook, collapsed."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field

import nbformat

SUPPORT_TAG = "support"
PURPOSE_CHARS = 72  # one line of the appendix index


@dataclass(frozen=True)
class Definition:
    signature: str  # "train_fast(model, bptt, train_data, ..., *, clip, ...)" or "class FitResult"
    purpose: str  # the docstring's first paragraph, on one line


@dataclass
class SupportCell:
    number: int | None  # the execution count Jupyter shows, In [number]
    title: str  # the cell's opening comment
    definitions: list[Definition] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)  # top-level names bound to literals and the like
    runs: list[str] = field(default_factory=list)  # what the cell computes besides its definitions


def signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    """``name(a, b, *args, c, **kwargs)``: parameter names only (no annotations, no defaults)."""
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(base) for base in node.bases)
        return f"class {node.name}" + (f"({bases})" if bases else "")
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        names.append("*")
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return f"{node.name}({', '.join(names)})"


def purpose(node: ast.AST) -> str:
    """The first sentence of the docstring, on one line, without backticks."""
    doc = ast.get_docstring(node) or ""  # type: ignore[arg-type]
    first = " ".join(doc.strip().split("\n\n")[0].split()).replace("`", "")
    first = re.split(r"(?<=[a-z0-9)])\. ", first)[0]
    return textwrap.shorten(first, PURPOSE_CHARS, placeholder=" ...") if first else ""


def opening_comment(source: str) -> str:
    """The comment lines at the top of a cell, joined (``from __future__`` lines skipped)."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            lines.append(stripped.lstrip("#").strip())
        elif stripped and not stripped.startswith("from __future__"):
            break
        elif lines and not stripped:
            break
    return " ".join(lines)


def index_cell(cell: nbformat.NotebookNode) -> SupportCell:
    """The index entry of one support cell."""
    entry = SupportCell(number=cell.get("execution_count"), title=opening_comment(cell.source))
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            entry.definitions.append(Definition(signature(node), purpose(node)))
        elif isinstance(node, ast.Assign | ast.AnnAssign) and not _calls(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            entry.constants += [ast.unparse(t) for t in targets]
        elif isinstance(node, ast.Assign | ast.Expr) and _calls(node.value):
            entry.runs.append(_short(node))
    return entry


def support_index(nb: nbformat.NotebookNode) -> list[SupportCell]:
    """The index entries of the notebook's support cells, in order."""
    cells = [
        c for c in nb.cells if c.cell_type == "code" and SUPPORT_TAG in c.get("metadata", {}).get("tags", [])
    ]
    return [index_cell(cell) for cell in cells]


def _calls(node: ast.AST | None) -> bool:
    return node is not None and any(isinstance(n, ast.Call) for n in ast.walk(node))


def _short(node: ast.Assign | ast.Expr) -> str:
    """``name = function(...)`` / ``function(...)``."""
    call = next(n for n in ast.walk(node.value) if isinstance(n, ast.Call))
    text = f"{ast.unparse(call.func)}(...)"
    if isinstance(node, ast.Assign):
        text = f"{', '.join(ast.unparse(t) for t in node.targets)} = {text}"
    return text
