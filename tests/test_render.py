"""hw3build.notebook.render: the notebook is valid, parameterised, complete and free of package imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hw3build.notebook.inline import NotSelfContained
from hw3build.notebook.render import (
    KERNELSPEC,
    TEMPLATE_NAME,
    RenderError,
    build_notebook,
    notebook_parameters,
    parameters_source,
    parse_cells,
    render_notebook,
)
from hw3build.notebook.schema import SUPPORT_TAG
from hw3build.report.nbtex import CODE_COLUMNS, display_width
from hw3build.submission.config import parse_config
from hw3build.submission.literal import markdown_literal

TASK_HEADINGS = [
    "Task 1 - Loading and Observing the Data",
    "Task 2 - Preparing the Data - Separating to Inputs and Targets",
    "Task 3 - Define Hyperparameters and Initialize the Model",
    "Task 4 - Train and Evaluate the Language Model",
    "Task 5 - Generate Sentences",
]
REAL_STUDENTS = [
    {"name": "Dana Levi", "email": "dana.levi@campus.technion.ac.il", "id": "000000018"},
    {"name": "Noam Cohen", "email": "noam.c@campus.technion.ac.il", "id": "000000026"},
]
PLACEHOLDERS = [
    {"name": "Student 1", "email": "student_1@campus.technion.ac.il", "id": "123456789"},
    {"name": "Student 2", "email": "student_2@campus.technion.ac.il", "id": "987654321"},
]


def config(students=REAL_STUDENTS, profile="quick", **hparams):
    return parse_config({"profile": profile, "students": students, "hparams": hparams})


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> nbformat.NotebookNode:
    path = render_notebook(config(), tmp_path_factory.mktemp("render") / "hw3.ipynb")
    return nbformat.read(path, as_version=4)


def test_valid_v4_notebook_with_papermill_metadata(notebook) -> None:
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.language_info.name == "python"


def test_one_parameters_cell_with_the_config_values(notebook) -> None:
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    namespace: dict = {}
    exec(tagged[0].source, namespace)
    expected = notebook_parameters(config())
    assert {k: namespace[k] for k in expected} == expected
    for name in ("profile", "data_dir", "out_dir", "device", "emsize", "lr", "epochs", "max_train_batches"):
        assert name in namespace


def test_no_empty_code_cells(notebook) -> None:
    assert all(c.source.strip() for c in notebook.cells if c.cell_type == "code")


def test_students_and_every_task_heading(notebook) -> None:
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    for student in REAL_STUDENTS:
        name, email = markdown_literal(student["name"]), markdown_literal(student["email"])
        assert f"|{name}|{email}|{student['id']}|" in markdown  # as typed: Markdown-escaped
    assert "PLACEHOLDER" not in markdown
    headings = [line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")]
    for heading in TASK_HEADINGS:
        assert heading in headings
    assert [h for h in headings if h.startswith("Task")] == TASK_HEADINGS  # in the assignment's order


def test_placeholders_are_marked_loudly(tmp_path: Path) -> None:
    nb = nbformat.read(render_notebook(config(PLACEHOLDERS), tmp_path / "p.ipynb"), as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "PLACEHOLDER STUDENT DETAILS" in markdown
    assert "|Student 1 **(PLACEHOLDER)**|" in markdown


def test_code_never_imports_our_packages(notebook) -> None:
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert not line.lstrip().startswith(
                    ("import hw3", "from hw3", "import hw3build", "from hw3build")
                )


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    a = render_notebook(config(), tmp_path / "a.ipynb").read_bytes()
    b = render_notebook(config(), tmp_path / "b.ipynb").read_bytes()
    assert a == b


def test_draft_marker_only_for_quick(tmp_path: Path) -> None:
    full = nbformat.read(render_notebook(config(profile="full"), tmp_path / "f.ipynb"), as_version=4)
    assert "DRAFT" not in full.cells[0].source
    quick = nbformat.read(render_notebook(config(), tmp_path / "q.ipynb"), as_version=4)
    assert "DRAFT" in quick.cells[0].source


def test_task4_explains_the_batch_order_and_the_chunk_boundaries_only_when_used(tmp_path: Path) -> None:
    def markdown(**hparams) -> str:
        path = render_notebook(config(**hparams), tmp_path / "n.ipynb")
        cells = nbformat.read(path, as_version=4).cells
        return "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")

    assert "random order (`shuffle_batches`" in markdown()  # the default shuffles
    assert "shuffle_batches" not in markdown(shuffle_batches=False)
    assert "random row in [0, 35) (`random_offset`" in markdown()  # the default moves the cuts every epoch
    assert "random_offset" not in markdown(random_offset=False)
    # the faster dropout masks are named either way; a run without dropout says it draws none
    assert "(NumPy's PCG64; the same distribution). The two completed lines" in markdown(dropout=0.1)
    assert "the same distribution) (this run's dropout is 0: it draws none). The two" in markdown(dropout=0.0)


def test_task3_ties_the_decoder_only_when_chosen(tmp_path: Path) -> None:
    def code(**hparams) -> str:
        path = render_notebook(config(**hparams), tmp_path / "n.ipynb")
        return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")

    assert "if hparams.tie_weights:" in code() and "def tie_weights(" in code()  # the parameters cell decides
    assert "tie_weights = False" in code() and "tie_weights = True" in code(tie_weights=True)


def test_empty_cell_and_missing_parameters_are_refused() -> None:
    with pytest.raises(RenderError, match="empty code cell"):
        build_notebook(parse_cells("%% code [parameters]\nx = 1\n%% code\n\n%% markdown\n# hi\n"))
    with pytest.raises(RenderError, match="parameters"):
        build_notebook(parse_cells("%% code\nx = 1\n"))
    with pytest.raises(RenderError, match="before the first"):
        parse_cells("stray text\n%% code\nx = 1\n")


def test_a_template_reading_an_undefined_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / TEMPLATE_NAME).write_text(
        "%% code [parameters]\nx = 1\n%% code\n{{ inlined_imports() }}\n{{ inline('hw3.data:batchify') }}\n"
        "%% code\nprint(batchify(torch.arange(4), x), undefined_y)\n"
    )
    with pytest.raises(NotSelfContained, match="undefined_y"):
        render_notebook(config(), tmp_path / "out.ipynb", template_dir=tmp_path)
    assert not (tmp_path / "out.ipynb").exists()


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_support_cells_are_collapsed_and_the_flow_cells_are_not(notebook) -> None:
    support = [c for c in code_cells(notebook) if SUPPORT_TAG in c.metadata.get("tags", [])]
    assert len(support) >= 5
    assert all(c.metadata["jupyter"] == {"source_hidden": True} for c in support)
    flow = [c for c in code_cells(notebook) if c not in support]
    assert not any(c.metadata.get("jupyter", {}).get("source_hidden") for c in flow)
    # the support code comes after the parameters and imports and before Task 1; saving comes last
    first_task = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("### Task 1"))
    indices = [i for i, c in enumerate(notebook.cells) if SUPPORT_TAG in c.metadata.get("tags", [])]
    assert indices[-1] == len(notebook.cells) - 1
    assert all(i < first_task for i in indices[:-1])
    headings = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    assert sum(h.startswith("### Support code") for h in headings) == 1  # one line says what and why


def test_the_given_code_with_the_completed_lines_marked(notebook) -> None:
    sources = {
        c.source.split("(", 1)[0]: c.source for c in code_cells(notebook) if c.source.startswith("def ")
    }
    train = sources["def train"]
    assert "output = model(data, src_mask)  # completed" in train
    assert "loss = criterion(output.view(-1, ntokens), targets)  # completed" in train
    assert "optimizer.zero_grad()\n            loss.backward()\n" in train  # the given lines, as given
    assert "# clip_grad_norm_(params, clip), folded into the fused optimizer's update" in train
    assert "target = source[i + 1 : i + 1 + seq_len].reshape(-1)  # completed" in sources["def get_batch"]
    assert "epochs = hp.epochs  # completed" in sources["def fit"]
    assert "train(  # completed: train() with this run's recipe" in sources["def fit"]
    flow = [c.source for c in code_cells(notebook) if SUPPORT_TAG not in c.metadata.get("tags", [])]
    assert any("check_loss_lines(train, model" in s for s in flow)  # the check beside train()


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}


def _calls(node: ast.AST) -> set[str]:
    """The names of the functions and methods node calls."""
    calls = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            calls.add(n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", ""))
    return calls


def _trains(function: ast.FunctionDef) -> bool:
    """A training loop: a for loop whose body takes a backward pass."""
    return any(isinstance(n, ast.For) and "backward" in _calls(n) for n in ast.walk(function))


def test_the_train_shown_in_task4_is_the_only_training_loop_and_the_epoch_loop_calls_it(notebook) -> None:
    cells = code_cells(notebook)
    task4 = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("### Task 4"))
    task5 = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("### Task 5"))
    defining = [c for c in cells if "train" in _functions(c.source)]
    assert len(defining) == 1  # one train(), in a visible cell of Task 4
    (train_cell,) = defining
    assert SUPPORT_TAG not in train_cell.metadata.get("tags", [])
    assert task4 < notebook.cells.index(train_cell) < task5
    loops = [(name, c) for c in cells for name, f in _functions(c.source).items() if _trains(f)]
    assert [name for name, _ in loops] == ["train"]  # no other loop takes training steps
    # the epoch loop, visible in Task 4, calls train() every epoch, and the training cell runs it
    (fit_cell,) = [c for c in cells if "fit" in _functions(c.source)]
    assert (
        SUPPORT_TAG not in fit_cell.metadata.get("tags", [])
        and task4 < notebook.cells.index(fit_cell) < task5
    )
    epoch_loop = next(n for n in ast.walk(_functions(fit_cell.source)["fit"]) if isinstance(n, ast.For))
    assert "train" in _calls(epoch_loop) and "evaluate" in _calls(epoch_loop)
    training = next(c for c in cells if "training" in c.metadata.get("tags", []))
    assert "fit" in _calls(ast.parse(training.source))


def test_each_task_marks_its_answer_cell_and_the_training_cell(notebook) -> None:
    tags = [t for c in code_cells(notebook) for t in c.metadata.get("tags", [])]
    assert [t for t in tags if t.startswith("answer-")] == [f"answer-t{n}" for n in range(1, 6)]
    assert tags.count("training") == 1
    training = next(c for c in code_cells(notebook) if "training" in c.metadata.get("tags", []))
    assert "fit(" in training.source


def test_every_code_line_fits_the_pdf_code_width(notebook) -> None:
    too_long = [
        (i, display_width(line), line)
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if display_width(line) > CODE_COLUMNS
    ]
    assert not too_long, too_long


def test_no_tool_names_lint_markers_or_rest_roles_in_the_notebook(notebook) -> None:
    text = "\n".join(c.source for c in notebook.cells)
    for forbidden in ("# noqa", "# fmt: skip", ":mod:`", ":func:`", ":class:`", "``", "hw3build", "Built by"):
        assert forbidden not in text, forbidden
    for tool in ("papermill", "nbconvert", "invoke", "pytest", "ruff"):
        assert tool not in text.lower(), tool


def test_the_parameters_cell_prints_no_local_folder(tmp_path: Path) -> None:
    cfg = parse_config({"profile": "quick", "students": REAL_STUDENTS, "data_dir": str(tmp_path)})
    assert cfg.data_dir == tmp_path  # the build gives it to the kernel as $HW3_DATA_DIR
    assert cfg.run_parameters()["data_dir"] is None
    nb = nbformat.read(render_notebook(cfg, tmp_path / "n.ipynb"), as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert "data_dir = None" in cell.source and str(tmp_path) not in cell.source


def test_parameters_are_one_a_line_as_papermill_reads_them_and_read_back_the_same(tmp_path: Path) -> None:
    """The cell once grouped several assignments to a line with ';': papermill's inspection missed the
    names after the first and warned of 'unknown' parameters the build had to silence."""
    import papermill

    params = {**notebook_parameters(config()), "new_knob": 3}
    source = parameters_source(params)
    namespace: dict = {}
    exec(source, namespace)
    assert {k: namespace[k] for k in params} == params
    lines = source.splitlines()
    assert ";" not in source and all(len(line) <= CODE_COLUMNS for line in lines)
    assert lines[-1] == "new_knob = 3"  # a name no group lists goes to the last group
    assert "# Task 3: the model" in source
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, tmp_path / "p.ipynb")
    assert set(papermill.inspect_notebook(str(tmp_path / "p.ipynb"))) == set(params)


def test_subnormal_floats_count_as_zero_in_every_thread_of_the_run(notebook) -> None:
    """The imports cell sets the CPU's flush of subnormal floats before torch starts its threads: every
    thread of the run then computes them as zero (set later, it would hold in the calling thread only,
    and the optimizer's state would slow down late in a run)."""
    imports = next(c.source for c in notebook.cells if c.cell_type == "code" and "import torch" in c.source)
    check = "torch.set_num_threads(2)\nx = torch.full((1 << 20,), 1e-30) * 1e-10\nprint(int((x != 0).sum()))"
    ran = subprocess.run(
        [sys.executable, "-c", f"seed = 211\n{imports}\n{check}"], capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip().splitlines()[-1] == "0"
