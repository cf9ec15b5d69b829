"""Copy the source of ``hw3`` functions, classes and constants into notebook cells.

The submitted notebook cannot import our package, so its code cells are rendered from the package's own
(tested) source: one source of truth. An object is named ``"hw3.module:name"``. Its top-level definition is
copied verbatim (functions and classes through :func:`inspect.getsource`; constants from the module's
syntax tree), together with everything it needs that the notebook would otherwise lack:

- names defined at the top of the same module (helpers, constants) and names the module imports with
  ``from hw3.<mod> import <name>`` are inlined too, dependencies first, each once per notebook;
- the module-level ``import``/``from ... import`` statements whose names the inlined code uses are
  collected for the notebook's imports cell (``from hw3...`` and ``from __future__`` lines are dropped:
  the notebook states ``from __future__ import annotations`` once, in its first code cell).

:func:`check_self_contained` is the safety net: it compiles the notebook's cells in order and reports every
name a cell reads that no builtin, import or earlier cell defines.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from hw3build.errors import BuildError

PACKAGE = "hw3"

# Names IPython puts in a notebook's namespace besides Python's builtins.
IPYTHON_NAMES = frozenset({"get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___"})


class InlineError(BuildError, ValueError):
    """An object cannot be inlined (unknown name, relative import, nested definition)."""


class NotSelfContained(BuildError, ValueError):
    """A notebook cell reads names that nothing before it defines."""


@dataclass(frozen=True)
class Definition:
    """One top-level definition of an hw3 module, ready to paste into a cell."""

    ref: str  # "hw3.data:batchify"
    source: str  # dedented source, decorators included
    needs: tuple[str, ...]  # refs of hw3 definitions it uses (inlined before it)
    imports: tuple[str, ...]  # import statements (one name each) it needs


def split_ref(ref: str) -> tuple[str, str]:
    module, sep, name = ref.partition(":")
    if not sep or not module or not name or "." in name:
        raise InlineError(f"object reference {ref!r} must look like 'hw3.module:name'")
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        raise InlineError(f"only {PACKAGE} objects can be inlined, not {ref!r}")
    return module, name


@cache
def _module_tree(module_name: str) -> tuple[ast.Module, str]:
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    return ast.parse(source), source


def _bound_names(node: ast.stmt) -> list[str]:
    """Names a top-level statement binds (def/class names, assignment targets)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    names = []
    for target in targets:
        names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return names


@dataclass
class _ModuleIndex:
    definitions: dict[str, ast.stmt] = field(default_factory=dict)  # top-level name -> defining statement
    imports: dict[str, str] = field(default_factory=dict)  # bound name -> import statement (one name)
    hw3_imports: dict[str, str] = field(default_factory=dict)  # bound name -> "hw3.mod:name"


@cache
def _index(module_name: str) -> _ModuleIndex:
    tree, _ = _module_tree(module_name)
    index = _ModuleIndex()
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    raise InlineError(
                        f"{module_name}: 'import {alias.name}' cannot be inlined; use 'from {alias.name} import name'"
                    )
                text = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                index.imports[bound] = text
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise InlineError(f"{module_name}: relative imports cannot be inlined (line {node.lineno})")
            if node.module == "__future__":
                continue
            for alias in node.names:
                bound = alias.asname or alias.name
                if node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                    if alias.asname and alias.asname != alias.name:
                        raise InlineError(
                            f"{module_name}: 'from {node.module} import ... as ...' cannot be inlined"
                        )
                    index.hw3_imports[bound] = f"{node.module}:{alias.name}"
                else:
                    text = f"from {node.module} import {alias.name}" + (
                        f" as {alias.asname}" if alias.asname else ""
                    )
                    index.imports[bound] = text
        else:
            for name in _bound_names(node):
                index.definitions.setdefault(name, node)
    return index


def object_source(ref: str) -> str:
    """The dedented source of one top-level hw3 definition (decorators included)."""
    module_name, name = split_ref(ref)
    index = _index(module_name)
    node = index.definitions.get(name)
    if node is None:
        raise InlineError(f"{ref}: no top-level definition of {name!r} in {module_name}")
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        obj = getattr(importlib.import_module(module_name), name)
        return textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n"
    _, module_source = _module_tree(module_name)
    segment = ast.get_source_segment(module_source, node)
    if segment is None:
        raise InlineError(f"{ref}: cannot locate the source of {name!r}")
    return segment.rstrip() + "\n"


COMPREHENSIONS = frozenset({"listcomp", "dictcomp", "setcomp", "genexpr"})


def read_names_by_time(source: str) -> tuple[set[str], set[str]]:
    """The names the code reads from its global namespace, split by when they are looked up: when the
    cell runs (its own statements, class bodies, default values, decorators, annotations), or only when a
    function it defines is called (function and lambda bodies).

    Uses :mod:`symtable`, the compiler's own scope analysis: a name counts when a scope reads it and it
    resolves to the module namespace (implicit or declared ``global``), unless the module scope binds it.
    Annotations are counted even under ``from __future__ import annotations`` (dataclasses and
    ``typing.get_type_hints`` evaluate them).
    """
    import symtable

    table = symtable.symtable(source, "<cell>", "exec")
    bound_at_top = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    now: set[str] = set()
    later: set[str] = set()

    def visit(t: symtable.SymbolTable, deferred: bool) -> None:
        found = later if deferred else now
        for symbol in t.get_symbols():
            if not symbol.is_referenced():
                continue
            if t.get_type() == "module":
                if not (symbol.is_assigned() or symbol.is_imported()):
                    found.add(symbol.get_name())
            elif symbol.is_global() and symbol.get_name() not in bound_at_top:
                found.add(symbol.get_name())
        for child in t.get_children():
            in_body = child.get_type() == "function" and child.get_name() not in COMPREHENSIONS
            visit(child, deferred or in_body)

    visit(table, False)
    # symtable does not look inside string annotations ("Vocab"); typing.get_type_hints would evaluate
    # them in the notebook's namespace, so their names must exist there too.
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
            ann = node.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
                try:
                    now |= {
                        n.id for n in ast.walk(ast.parse(ann.value, mode="eval")) if isinstance(n, ast.Name)
                    }
                except SyntaxError:
                    pass
    now -= bound_at_top
    return now, later - bound_at_top - now


def read_names(source: str) -> set[str]:
    """Names the code reads from its global namespace (free names of every scope, annotations included)."""
    now, later = read_names_by_time(source)
    return now | later


def defined_names(source: str) -> set[str]:
    """Names the code binds in the module (notebook) namespace."""
    import symtable

    table = symtable.symtable(source, "<cell>", "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


@cache
def definition(ref: str) -> Definition:
    """The source of ``ref`` with the hw3 definitions and imports it depends on."""
    module_name, name = split_ref(ref)
    index = _index(module_name)
    source = object_source(ref)
    needs: list[str] = []
    imports: list[str] = []
    for free in sorted(read_names(source) - {name}):
        if free in index.definitions:
            needs.append(f"{module_name}:{free}")
        elif free in index.hw3_imports:
            needs.append(index.hw3_imports[free])
        elif free in index.imports:
            imports.append(index.imports[free])
        elif not hasattr(builtins, free):
            raise InlineError(f"{ref} uses {free!r}, which {module_name} neither defines nor imports")
    return Definition(ref=ref, source=source, needs=tuple(needs), imports=tuple(imports))


class Inliner:
    """Hands out each hw3 definition once per notebook, dependencies first.

    ``code(refs)`` returns the source for a cell; definitions already handed out are skipped.
    ``imports()`` returns the import lines every handed-out definition needs.
    """

    def __init__(self) -> None:
        self.emitted: list[str] = []
        self.deferred: set[str] = set()

    def defer(self, refs: Sequence[str] | str) -> str:
        """Declare hw3 definitions that a later cell inlines itself (a task's given code): an earlier
        definition that only calls them from its body does not pull them in. Returns "" (for templates)."""
        self.deferred |= {refs} if isinstance(refs, str) else set(refs)
        return ""

    def check_deferred(self) -> None:
        """Raise InlineError if a deferred definition was never inlined."""
        missing = sorted(self.deferred - set(self.emitted))
        if missing:
            raise InlineError(f"deferred but never inlined: {', '.join(missing)}")

    def _order(self, ref: str, stack: tuple[str, ...], out: list[str]) -> None:
        if ref in self.emitted or ref in out or (stack and ref in self.deferred):
            return
        if ref in stack:
            raise InlineError(f"circular dependency between inlined objects: {' -> '.join(stack + (ref,))}")
        for need in definition(ref).needs:
            self._order(need, stack + (ref,), out)
        out.append(ref)

    def code(self, refs: Sequence[str] | str) -> str:
        refs = [refs] if isinstance(refs, str) else list(refs)
        order: list[str] = []
        for ref in refs:
            self._order(ref, (), order)
        self.emitted += order
        return "\n\n\n".join(definition(ref).source.rstrip() for ref in order)

    def imports(self, already_bound: Iterable[str] = ()) -> list[str]:
        """The merged import lines of every handed-out definition, minus those binding a name in
        ``already_bound`` (e.g. ``from torch import Tensor`` when the cell has ``from torch import nn, Tensor``)."""
        skip = set(already_bound)
        lines = {line for ref in self.emitted for line in definition(ref).imports}
        return merge_imports(line for line in lines if import_binds(line) not in skip)


def import_binds(line: str) -> str:
    """The name a one-name import statement binds."""
    if " as " in line:
        return line.rsplit(" as ", 1)[1].strip()
    if line.startswith("from "):
        return line.rsplit(" import ", 1)[1].strip()
    return line[len("import ") :].strip().split(".")[0]


def merge_imports(lines: Iterable[str]) -> list[str]:
    """One-name import statements merged per module, sorted: ``import x`` lines first, then ``from`` lines."""
    plain: set[str] = set()
    from_imports: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("from "):
            module, _, name = line[len("from ") :].partition(" import ")
            from_imports.setdefault(module, set()).add(name)
        else:
            plain.add(line)
    merged = sorted(plain)
    merged += [
        f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(from_imports.items())
    ]
    return merged


def ipython_to_python(cell_source: str) -> str:
    """A cell's source as plain Python (``%magic`` and ``!shell`` lines translated the way IPython does)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def check_self_contained(cells: Sequence[str], predefined: Iterable[str] = ()) -> None:
    """Raise :class:`NotSelfContained` if a cell reads a name no builtin, import or earlier cell defines.

    ``cells`` are the notebook's code cells in order (IPython syntax allowed). A name defined later in the
    same cell is accepted (symtable cannot tell the order within a cell); a name a cell reads when it runs
    and only a later cell defines is not. A name read only inside a function body is looked up when the
    function is called, so a later cell may define it (as the tasks' given code is defined after the
    support code that calls it).
    """
    known = set(dir(builtins)) | IPYTHON_NAMES | set(predefined)
    problems: list[str] = []
    sources: list[str | None] = []
    for number, cell in enumerate(cells):
        source = ipython_to_python(cell)
        try:
            compile(source, f"<cell {number}>", "exec", flags=_FUTURE_ANNOTATIONS, dont_inherit=True)
        except SyntaxError as exc:
            problems.append(f"code cell {number}: syntax error: {exc}")
            source = None
        sources.append(source)
    defined = [defined_names(source) if source is not None else set() for source in sources]
    for number, (cell, source) in enumerate(zip(cells, sources, strict=True)):
        if source is None:
            continue
        now, later = read_names_by_time(source)
        defined_later = set().union(*defined[number + 1 :])
        missing = (now - known) | (later - known - defined_later)
        if missing:
            first_line = cell.strip().splitlines()[0] if cell.strip() else ""
            problems.append(
                f"code cell {number} ({first_line[:60]!r}) uses undefined name(s): {sorted(missing)}"
            )
        known |= defined[number]
    if problems:
        raise NotSelfContained("the notebook is not self-contained:\n  " + "\n  ".join(problems))


def _future_annotations_flag() -> int:
    import __future__

    return __future__.annotations.compiler_flag


_FUTURE_ANNOTATIONS = _future_annotations_flag()
