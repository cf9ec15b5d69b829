"""hw3build.render: the notebook is valid, parameterised, complete and free of package imports."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch
from hw3.vocab import Vocab
from hw3build.config import parse_config
from hw3build.inline import NotSelfContained
from hw3build.literal import markdown_literal
from hw3build.render import (
    TEMPLATE_NAME,
    RenderError,
    build_notebook,
    notebook_parameters,
    parse_cells,
    render_notebook,
)

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

    assert "**Batch order (`shuffle_batches`).**" in markdown()  # the default shuffles
    assert "Batch order" not in markdown(shuffle_batches=False)
    assert "**Chunk boundaries (`random_offset`).**" in markdown()  # the default moves the cuts every epoch
    assert "Chunk boundaries" not in markdown(random_offset=False)


def test_task3_ties_the_decoder_only_when_chosen(tmp_path: Path) -> None:
    def cells(**hparams) -> tuple[str, str]:
        path = render_notebook(config(**hparams), tmp_path / "n.ipynb")
        nb = nbformat.read(path, as_version=4).cells
        return tuple("\n".join(c.source for c in nb if c.cell_type == kind) for kind in ("markdown", "code"))

    markdown, code = cells()
    assert "decoder tied to the embedding" not in markdown
    assert "if hparams.tie_weights:" in code and "def tie_weights(" in code  # the parameters cell decides
    markdown, code = cells(tie_weights=True)
    assert "decoder tied to the embedding" in markdown
    assert "tie_weights = True" in code


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


def test_the_sense_check_cell_measures_what_it_claims(notebook) -> None:
    """The notebook's own analysis code ("do they make sense?"), run on a tiny synthetic corpus."""
    (cell,) = [c for c in notebook.cells if c.source.startswith("def sentence_sense_check(")]
    definition = cell.source.split("\n\n\nsense = ")[0]
    namespace: dict = {"torch": torch, "math": math}
    exec(definition, namespace)
    vocab = Vocab(["<unk>", "a", "b", "c"])
    train = torch.tensor([1, 2, 1, 2, 1, 2, 1, 3]).view(2, 4).t()  # batchified: 2 columns
    test = torch.tensor([[1, 1], [2, 2], [1, 1], [3, 3], [3, 3]])
    result = namespace["sentence_sense_check"](
        ["a b a", "c c c"], train, test, 0.0, vocab, bptt=2, max_batches=1
    )
    # unigram probabilities from the training text: a 4/8, b 3/8, c 1/8; targets of one batch: rows 1-2
    expected = math.exp(-(2 * math.log(3 / 8) + 2 * math.log(4 / 8)) / 4)
    assert result["unigram_ppl"] == pytest.approx(expected)
    # running text (column after column) a b a b a b a c: (a,b) and (b,a) occur, (c,c) does not: 2 of 4 pairs
    assert result["pair_share"] == pytest.approx(0.5)
    assert result["test_ppl"] == 1.0
