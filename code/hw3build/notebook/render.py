"""Render the submission notebook from ``templates/notebook/`` and the ``hw3`` package source.

The template is plain text with one line per cell boundary::

    %% markdown
    ## Task 1 - ...
    %% code
    {{ inline("hw3.data:batchify") }}
    %% code [parameters]
    profile = "quick"

A code cell tagged ``support`` holds support code (the torchtext replacement, the hyper-parameter checks, the
fast training path, saving the results): Jupyter shows it collapsed (``metadata.jupyter.source_hidden``) and
the report leaves it out of Part 2 and lists its definitions in the appendix. A cell tagged ``answer-<key>``
(``answer-t1`` ...) holds the key result of a task; the report's answer index links to it.
``inline(refs)`` pastes the source of hw3 objects (and the hw3 helpers they use, each once, dependencies
first; :mod:`hw3build.notebook.inline`); ``inlined_imports()`` marks where the imports those objects need go (filled
in after the whole template is rendered, since later cells add to them). The result is checked before it is
written: valid nbformat v4, exactly one ``parameters`` cell, no empty code cell, and every name a code cell
reads defined by a builtin, an import or an earlier cell.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from hw3.files import write_atomic
from hw3tools.repo import TEMPLATES_DIR
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hw3build.draft import is_draft
from hw3build.errors import BuildError
from hw3build.notebook.inline import InlineError, Inliner, check_self_contained, defined_names
from hw3build.notebook.schema import PARAMETERS_TAG, SUPPORT_TAG, has_tag, template_globals
from hw3build.submission.literal import markdown_literal

TEMPLATE_DIR = TEMPLATES_DIR / "notebook"
TEMPLATE_NAME = "hw3.ipynb.j2"
CELL_MARKER = re.compile(r"^%% (markdown|code)(?: \[([\w,-]+)\])?[ \t]*$")
IMPORTS_SENTINEL = "# <<hw3build: inlined imports>>"
# Where the notebook writes metrics.json and figures/ when run by hand (Colab): next to itself.
DEFAULT_OUT_DIR = "outputs"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {
    "name": "python",
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "pygments_lexer": "ipython3",
    "codemirror_mode": {"name": "ipython", "version": 3},
    "nbconvert_exporter": "python",
}


class RenderError(BuildError, ValueError):
    """The template produced an invalid notebook (the message says which cell and why)."""


@dataclasses.dataclass(frozen=True)
class CellSpec:
    cell_type: str  # "markdown" | "code"
    source: str
    tags: tuple[str, ...] = ()
    line: int = 0  # line of the marker in the rendered template (for error messages)


def notebook_parameters(config: Any) -> dict[str, Any]:
    """The ``parameters`` cell's defaults: the config's choices (profile, data_dir, device, hyper-parameters)
    and ``out_dir``. The build overrides ``out_dir`` (and may override the rest) through papermill."""
    params = dict(config.run_parameters())  # data_dir None: the kernel finds the data itself
    ordered = {name: params.pop(name) for name in ("profile", "data_dir", "device") if name in params}
    return {**ordered, "out_dir": DEFAULT_OUT_DIR, **params}


# The parameters cell's groups, in order: (comment, names). A name in no group goes to the last one.
PARAMETER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "what runs (full: the submission, or quick: a short check), on which device, which folders",
        ("profile", "device", "data_dir", "out_dir"),
    ),
    ("Task 3: the model", ("emsize", "nhid", "nlayers", "nhead", "dropout", "norm_first", "tie_weights")),
    (
        "Task 3: the optimizer",
        ("optimizer", "lr", "adam_beta1", "adam_beta2", "weight_decay", "decoupled_weight_decay"),
    ),
    ("Task 3: the schedule", ("scheduler", "warmup_batches", "step_gamma", "cooldown")),
    (
        "Task 4: training",
        ("epochs", "bptt", "batch_size", "eval_batch_size", "clip", "shuffle_batches", "random_offset"),
    ),
    (
        "seed, precision, batches trained per epoch and evaluated (None: all)",
        ("seed", "precision", "max_train_batches", "max_eval_batches", "log_interval"),
    ),
)
PARAMETER_COLUMNS = 100  # the code width of the PDF (hw3build.report.nbtex.CODE_COLUMNS)


def parameters_source(params: dict[str, Any]) -> str:
    """``name = value`` assignments (Python literals), one a line as papermill's parameter inspection
    reads them, which papermill overrides in an injected cell: grouped by what they set, the group's
    comment at the end of its first line (on a line of its own when that would pass the code width)."""
    grouped = {name for _, names in PARAMETER_GROUPS for name in names}
    groups = [(comment, [n for n in names if n in params]) for comment, names in PARAMETER_GROUPS]
    groups[-1][1].extend(n for n in params if n not in grouped)
    lines: list[str] = []
    for comment, names in groups:
        group = [f"{name} = {params[name]!r}" for name in names]
        if group and len(group[0]) + len(f"  # {comment}") <= PARAMETER_COLUMNS:
            group[0] += f"  # {comment}"
        elif group:
            group.insert(0, f"# {comment}")
        lines += group
    return "\n".join(lines)


def students_context(config: Any) -> list[dict[str, Any]]:
    rows = []
    for student in config.students:
        placeholder = tuple(getattr(student, "placeholder_fields", ()))
        rows.append(
            {"name": student.name, "email": student.email, "id": student.id, "placeholder": placeholder}
        )
    return rows


def _environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["md"] = markdown_literal  # typed text (names) shown as typed, in its reading order
    env.globals.update(template_globals())  # the tags and the assignment's headings, declared once
    return env


def render_text(config: Any, template_dir: Path = TEMPLATE_DIR, template_name: str = TEMPLATE_NAME) -> str:
    """The rendered template (cell markers included), imports filled in."""
    inliner = Inliner()
    students = students_context(config)
    hparams = config.hparams
    context = {
        "students": students,
        "has_placeholders": any(s["placeholder"] for s in students),
        "profile": config.profile,
        "draft": is_draft(config.profile, hparams.to_dict()),
        "hparams": hparams,
        "parameters_source": parameters_source(notebook_parameters(config)),
        "inline": inliner.code,
        "defer": inliner.defer,
        "inlined_imports": lambda: IMPORTS_SENTINEL,
    }
    text = _environment(template_dir).get_template(template_name).render(**context)
    try:
        inliner.check_deferred()
    except InlineError as exc:
        raise RenderError(str(exc)) from None
    if text.count(IMPORTS_SENTINEL) != 1:
        raise RenderError("the template must call inlined_imports() exactly once (in the imports cell)")
    return _fill_imports(text, inliner)


def _fill_imports(text: str, inliner: Inliner) -> str:
    """Replace the sentinel with the imports the inlined code needs, minus the names that cell and the code
    cells before it already bind."""
    end = text.find("\n%% ", text.index(IMPORTS_SENTINEL))
    cells = parse_cells(text[: end if end != -1 else len(text)])
    bound: set[str] = set()
    for cell in cells:
        if cell.cell_type == "code":
            try:
                bound |= defined_names(cell.source)
            except SyntaxError as exc:
                raise RenderError(
                    f"template line {cell.line}: a code cell is not valid Python: {exc}"
                ) from None
    missing = inliner.imports(already_bound=bound)
    return text.replace(IMPORTS_SENTINEL, "\n".join(missing) if missing else "# (none needed)")


def parse_cells(text: str) -> list[CellSpec]:
    """Split rendered template text into cells at ``%% markdown`` / ``%% code [tags]`` lines."""
    cells: list[CellSpec] = []
    current: tuple[str, tuple[str, ...], int] | None = None
    lines: list[str] = []

    def flush() -> None:
        if current is not None:
            cells.append(CellSpec(current[0], "\n".join(lines).strip("\n").rstrip(), current[1], current[2]))

    for number, line in enumerate(text.splitlines(), start=1):
        match = CELL_MARKER.match(line)
        if match:
            flush()
            tags = tuple(t for t in (match.group(2) or "").split(",") if t)
            current, lines = (match.group(1), tags, number), []
        elif current is None:
            if line.strip():
                raise RenderError(f"line {number}: text before the first '%% markdown'/'%% code' marker")
        else:
            lines.append(line)
    flush()
    return cells


def build_notebook(cells: list[CellSpec]) -> nbformat.NotebookNode:
    """A v4 notebook of ``cells`` with the metadata papermill needs; refuses empty cells."""
    nb = new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)})
    for index, spec in enumerate(cells):
        if not spec.source.strip():
            raise RenderError(
                f"template line {spec.line}: empty {spec.cell_type} cell (an empty code cell never gets an "
                "execution count, which the course's rules treat as not run)"
            )
        make = new_code_cell if spec.cell_type == "code" else new_markdown_cell
        cell = make(spec.source)
        cell["id"] = f"cell-{index:03d}"  # stable ids: the same template renders byte-identical notebooks
        if spec.tags:
            cell.metadata["tags"] = list(spec.tags)
        if spec.cell_type == "code" and SUPPORT_TAG in spec.tags:
            cell.metadata["jupyter"] = {"source_hidden": True}
        nb.cells.append(cell)
    tagged = [c for c in nb.cells if has_tag(c, PARAMETERS_TAG)]
    if len(tagged) != 1 or tagged[0].cell_type != "code":
        raise RenderError(
            f"the template must have exactly one '%% code [parameters]' cell, found {len(tagged)}"
        )
    nbformat.validate(nb)
    return nb


def render_notebook(config: Any, out_path: Path, template_dir: Path = TEMPLATE_DIR) -> Path:
    """Render the notebook for ``config`` (a ``hw3build.submission.config.SubmissionConfig``) to ``out_path``.

    Raises :class:`RenderError` for a malformed template and ``hw3build.notebook.inline.NotSelfContained`` when a
    code cell reads a name the notebook never defines.
    """
    out_path = Path(out_path)
    nb = build_notebook(parse_cells(render_text(config, template_dir)))
    check_self_contained([c.source for c in nb.cells if c.cell_type == "code"])
    return write_atomic(out_path, nbformat.writes(nb) + "\n")
