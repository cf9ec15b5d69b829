"""A Moodle-shaped archive of submissions made from one good notebook, and the row expected for each.

Every entry is one group's folder (``<group>_<n>_assignsubmission_file_/``) holding what it uploaded: valid
ones in both forms with different names (Hebrew included) and IDs, each rule broken once, the hostile zips
that crashed the validator, a zip bomb, a PDF of 2,000 pages, stripped outputs, an ID in two groups and
two identical notebooks. ``base`` is any executed notebook whose Task 3 prints the hyper-parameters and
whose Task 4 prints ``test ppl``: the small stand-in below, or a real quick build's.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from hostile import PNG, bomb_member, patch_member, strip_all_but_prints, strip_figures, zip_of
from hw3.hparams import profile_defaults
from hw3build.submission.config import israeli_id_valid
from hw3build.submission.validate import _prints_at_top_level
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from submission_fixtures import good_pdf_pages, heading_lines, pdf_bytes


def valid_ids(count: int, start: int = 31_000_000) -> list[str]:
    """``count`` nine-digit IDs with a valid check digit."""
    ids: list[str] = []
    number = start
    while len(ids) < count:
        candidate = f"{number:08d}" + str(next(d for d in range(10) if israeli_id_valid(f"{number:08d}{d}")))
        ids.append(candidate)
        number += 7
    return ids


def stand_in_notebook() -> nbformat.NotebookNode:
    """A small executed notebook shaped like ours: students, Tasks 1-5, Task 3's print, a figure, Task 4's
    epochs and test perplexity."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papermill"] = {"exception": False, "parameters": {"profile": "full"}, "duration": 2100.5}
    count = iter(range(1, 100))

    def code(source: str, text: str = "", image: bool = False) -> nbformat.NotebookNode:
        outputs = [new_output("stream", name="stdout", text=text)] if text else []
        if image:
            outputs.append(new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}))
        return new_code_cell(source, execution_count=next(count), outputs=outputs)

    nb.cells = [
        new_markdown_cell(
            "# ECE 046211 - Technion - Deep Learning\n## HW3 - Sequential Tasks and Training Methods"
        ),
        new_markdown_cell(
            "### Students Information\n\n|Name|Campus Email|ID|\n|---|---|---|\n"
            "|Alice Levi|alice@campus.technion.ac.il|000000000|\n|Bob Cohen|bob@campus.technion.ac.il|000000000|"
        ),
        new_markdown_cell("### Task 1 - Loading and Observing the Data"),
        code("print(train_data.shape)  # [time steps, batch]", "torch.Size([104335, 20])\n"),
        new_markdown_cell("### Task 2 - Preparing the Data - Separating to Inputs and Targets"),
        code(
            "data, targets = get_batch(train_data, 0)\nprint(data.shape, targets.shape)", "(35, 20) (700,)\n"
        ),
        new_markdown_cell("### Task 3 - Define Hyperparameters and Initialize the Model"),
        code(
            "print(hparams.describe())",
            "embedding size (emsize)       250\nhidden units (nhid)           250\n"
            "encoder layers (nlayers)      4\nattention heads (nhead)       2\ndropout                       0.1\n"
            "optimizer                     Adam (betas 0.9, 0.999)\nlearning rate (peak)          0.005\n",
        ),
        new_markdown_cell("### Task 4 - Train and Evaluate the Language Model"),
        code(
            "fit_result = fit(model, train_data, val_data, hparams)",
            "| end of epoch   1 | time: 500.00s | valid loss  5.60 | valid ppl   270.43\n"
            "| end of epoch   2 | time: 500.00s | valid loss  5.30 | valid ppl   200.34\n",
        ),
        code(
            'print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")',
            "| End of training | test loss  5.10 | test ppl   164.02\n",
        ),
        code("plot_curves(fit_result.history)\nplt.show()", image=True),
        new_markdown_cell("### Task 5 - Generate Sentences"),
        code("for s in sentences:\n    print(s)", "1. the game was released in the united states .\n"),
    ]
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"
    return nb


def as_final(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of a quick build's notebook that reads as a final one: the DRAFT and placeholder notes taken
    out of the Markdown, the profile set to full (the corpus then breaks one rule at a time from there)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines()
            cell.source = "\n".join(
                line
                for line in lines
                if not (line.startswith(">") and re.search(r"DRAFT|PLACEHOLDER|draft", line))
            )
    # what papermill would have injected for a full run over the quick cell: the values that differ
    full = profile_defaults("full")
    nb.metadata.setdefault("papermill", {}).setdefault("parameters", {}).update(
        profile="full", epochs=full.epochs, max_train_batches=None, max_eval_batches=None
    )
    return nb


def set_students(nb: nbformat.NotebookNode, students: list[tuple[str, str]]) -> None:
    """Replace the rows of the students' table (the Markdown rows holding a 9-digit ID)."""
    for cell in nb.cells:
        lines = cell.source.splitlines()
        rows = [i for i, line in enumerate(lines) if line.startswith("|") and re.search(r"\|\s*\d{9}", line)]
        if cell.cell_type == "markdown" and rows:
            new_rows = [
                f"|{name}|{name.split()[0].lower()}@campus.technion.ac.il|{sid}|" for name, sid in students
            ]
            cell.source = "\n".join(lines[: rows[0]] + new_rows + lines[rows[-1] + 1 :])
            return
    raise AssertionError("the base notebook has no students' table")


def edit_outputs(nb: nbformat.NotebookNode, pattern: str, replace: Callable[[re.Match[str]], str]) -> None:
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if isinstance(output.get("text"), str):
                output["text"] = re.sub(pattern, replace, output["text"])


def set_test_ppl(nb: nbformat.NotebookNode, value: float) -> None:
    edit_outputs(nb, r"(test ppl\s+)[\d.]+", lambda m: f"{m.group(1)}{value:8.2f}")


@dataclass
class Expected:
    status: str
    fail: set[str] = field(default_factory=set)
    warn: set[str] = field(default_factory=set)
    flags: list[str] = field(default_factory=list)  # a substring of each flag the row must show
    test_ppl: float | None = None
    ids: list[str] | None = None


@dataclass
class Corpus:
    archive: Path
    expected: dict[str, Expected]  # by submission key (the group's folder)


class _Builder:
    def __init__(self, base: nbformat.NotebookNode) -> None:
        self.base = base
        self.ids = iter(valid_ids(80))
        self.members: dict[str, bytes] = {}
        self.expected: dict[str, Expected] = {}
        self.count = 0
        self.ppl = 150.0

    def notebook(
        self, ids: tuple[str, str], names: tuple[str, str], change: Callable | None = None
    ) -> tuple[nbformat.NotebookNode, float]:
        nb = nbformat.reads(nbformat.writes(self.base), as_version=4)
        set_students(nb, list(zip(names, ids, strict=True)))
        self.ppl += 1.25
        set_test_ppl(nb, self.ppl)
        if change:
            change(nb)
        return nb, self.ppl

    def folder(self, group: str) -> str:
        self.count += 1
        return f"{group}_{1000 + self.count}_assignsubmission_file_"

    def add(
        self,
        group: str,
        expected: Expected,
        *,
        form: str = "zip",
        change: Callable | None = None,
        pages: list[list[str]] | None = None,
        ids: tuple[str, str] | None = None,
        names: tuple[str, str] = ("Alice Levi", "Bob Cohen"),
        members: Callable[[dict[str, bytes]], dict[str, bytes]] | None = None,
        raw: Callable[[bytes], bytes] | None = None,
        upload_name: str | None = None,
        extra_files: dict[str, bytes] | None = None,
        nb: nbformat.NotebookNode | None = None,
    ) -> str:
        ids = ids or (next(self.ids), next(self.ids))
        stem = f"ece046211_hw3_{ids[0]}_{ids[1]}"
        if nb is None:
            nb, ppl = self.notebook(ids, names, change)
            expected.test_ppl = expected.test_ppl if expected.test_ppl is not None else ppl
        notebook = nbformat.writes(nb).encode()
        printable = [name if name.isascii() else "" for name in names]  # the stand-in PDF's font is Latin-1
        cover = [f"ECE 046211 Deep Learning - HW3 - {printable[0]} {ids[0]} and {printable[1]} {ids[1]}"]
        pdf = pdf_bytes(pages if pages is not None else [cover, *good_pdf_pages()[1:]])
        if form == "zip":
            content = {f"{stem}.ipynb": notebook, f"{stem}.pdf": pdf}
            data = zip_of(members(content) if members else content)
            name = upload_name or f"{stem}.zip"
        else:
            data = notebook
            name = upload_name or f"{stem}.ipynb"
        if raw:
            data = raw(data)
        folder = self.folder(group)
        self.members[f"{folder}/{name}"] = data
        for extra, content in (extra_files or {}).items():
            self.members[extra.format(folder=folder)] = content
        expected.ids = expected.ids if expected.ids is not None else list(ids)
        self.expected[folder] = expected
        return folder

    def write(self, path: Path) -> Corpus:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, data in self.members.items():
                archive.writestr(name, data)
        return Corpus(path, self.expected)


def _placeholder(nb: nbformat.NotebookNode) -> None:
    nb.cells[1].source += "\n\n> **PLACEHOLDER STUDENT DETAILS - EDIT `submission.toml` BEFORE SUBMITTING.**"


def _cell_of(nb: nbformat.NotebookNode, text: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


def _first_printing_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(
        c for c in nb.cells if c.cell_type == "code" and c.get("outputs") and _prints_at_top_level(c.source)
    )


def build_corpus(base: nbformat.NotebookNode, folder: Path) -> Corpus:
    """Write ``folder``/moodle.zip and return it with the expected row of every submission."""
    b = _Builder(base)
    ok = lambda: Expected("ok")  # noqa: E731
    # valid, both forms, different names and IDs
    b.add("Alice Levi", ok())
    b.add("Carmel Dayan", ok(), form="ipynb", names=("Carmel Dayan", "Dor Mizrahi"))
    b.add("דנה כהן", ok(), names=("דנה כהן", "יוסי לוי"))
    b.add("Eden Peretz", ok(), names=("Eden Peretz", "Gal Azulay"))
    # each rule broken once
    b.add("renamed", Expected("fail", {"name"}), upload_name="hw3_final_submission.zip")
    same = next(b.ids)
    b.add("same id twice", Expected("fail", {"ids"}, flags=[]), ids=(same, same))
    good = next(b.ids)
    b.add(
        "bad check digit",
        Expected("fail", {"ids"}),
        ids=(good[:8] + str((int(good[8]) + 1) % 10), next(b.ids)),
    )
    b.add("extra member", Expected("fail", {"members"}), members=lambda m: {**m, "notes.txt": b"hi"})
    b.add(
        "no pdf",
        Expected("fail", {"members", "pdf"}),
        members=lambda m: {k: v for k, v in m.items() if k.endswith(".ipynb")},
    )
    b.add(
        "broken json",
        Expected("fail", {"notebook"}, test_ppl=-1),
        form="ipynb",
        raw=lambda d: d[: len(d) // 2],
    )
    b.add(
        "unexecuted cell",
        Expected("fail", {"executed"}),
        change=lambda nb: setattr(_cell_of(nb, "get_batch"), "execution_count", None),
    )
    b.add(
        "out of order",
        Expected("fail", {"executed"}),
        change=lambda nb: setattr(_cell_of(nb, "get_batch"), "execution_count", 1000),
    )
    b.add(
        "error output",
        Expected("fail", {"errors"}),
        change=lambda nb: _cell_of(nb, "get_batch").outputs.append(
            new_output("error", ename="RuntimeError", evalue="boom", traceback=["RuntimeError: boom"])
        ),
    )
    b.add(
        "print without output",
        Expected("fail", {"outputs"}),
        change=lambda nb: setattr(_first_printing_cell(nb), "outputs", []),
    )
    b.add("figures stripped", Expected("fail", {"figures"}), change=strip_figures)
    b.add("all but prints stripped", Expected("fail", {"figures"}), change=strip_all_but_prints)
    b.add(
        "heading missing",
        Expected("fail", {"headings"}),
        pages=[["cover"], *([line] for line in heading_lines()[:-1])],
    )
    swapped = heading_lines()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    b.add(
        "headings swapped", Expected("fail", {"headings"}), pages=[["cover"], *([line] for line in swapped)]
    )
    b.add(
        "raw latex",
        Expected("fail", {"latex"}),
        pages=[["cover"], *([line, "\\frac{a}{b} and \\sqrt{d}"] for line in heading_lines())],
    )
    b.add("placeholder", Expected("warn", warn={"placeholder"}), change=_placeholder)
    b.add(
        "draft",
        Expected("warn", warn={"draft"}),
        change=lambda nb: nb.metadata.papermill.__setitem__("parameters", {"profile": "quick"}),
    )
    b.add(
        "hparams out of range",
        Expected("fail", {"hparams"}),
        change=lambda nb: edit_outputs(
            nb, r"(embedding size \(emsize\)[\s:]+)\d+", lambda m: m.group(1) + "512"
        ),
    )
    b.add(
        "papermill exception",
        Expected("fail", {"executed"}),
        change=lambda nb: nb.metadata.papermill.__setitem__("exception", True),
    )
    # the hostile zips that crashed the validator
    b.add(
        "encrypted",
        Expected("fail", {"archive"}, test_ppl=-1),
        raw=lambda d: patch_member(d, _first(d), flag_bits=1),
    )
    b.add(
        "unknown method",
        Expected("fail", {"archive"}, test_ppl=-1),
        raw=lambda d: patch_member(d, _first(d), method=9),
    )
    b.add(
        "papermill list",
        Expected("fail", {"executed"}),
        change=lambda nb: nb.metadata.__setitem__("papermill", ["x"]),
    )
    b.add(
        "parameters string",
        Expected("fail", {"executed"}),
        change=lambda nb: nb.metadata.__setitem__("papermill", {"parameters": "profile=full"}),
    )
    b.add(
        "deep expression",
        ok(),
        change=lambda nb: nb.cells.append(
            new_code_cell("x = " + " + ".join(["1"] * 100_000), execution_count=999)
        ),
    )
    bomb_ids = (next(b.ids), next(b.ids))
    b.add(
        "zip bomb",
        Expected("fail", {"limits"}, test_ppl=-1, ids=[]),
        ids=bomb_ids,
        raw=lambda d: bomb_member(f"ece046211_hw3_{bomb_ids[0]}_{bomb_ids[1]}.ipynb", 1 << 30),
    )
    b.add("pdf of 2000 pages", Expected("fail", {"limits", "pdf"}), pages=[["page"]] * 2000)
    b.add(
        "nested zip",
        Expected("fail", {"layout", "members"}),
        members=lambda m: {**m, "inner.zip": zip_of({"a": b"1"})},
    )
    b.add("macosx junk", Expected("warn", warn={"layout"}), extra_files={"__MACOSX/{folder}/._x": b"\0"})
    b.add("two uploads", Expected("fail", {"layout"}), extra_files={"{folder}/old_version.ipynb": b"{}"})
    b.add(
        "not a zip",
        Expected("fail", {"archive"}, test_ppl=-1, ids=[]),
        raw=lambda d: b"this is not a zip file",
    )
    b.add(
        "pdf only",
        Expected("fail", {"layout"}, test_ppl=-1, ids=[]),
        upload_name="report.pdf",
        raw=lambda d: pdf_bytes([["cover"]]),
    )
    # across submissions: an ID in two groups, two identical notebooks
    shared = next(b.ids)
    one = b.add("shared id one", Expected("ok"), ids=(shared, next(b.ids)))
    two = b.add("shared id two", Expected("ok"), ids=(next(b.ids), shared))
    b.expected[one].flags, b.expected[two].flags = (
        [f"ID {shared} is also in {two}"],
        [f"ID {shared} is also in {one}"],
    )
    twin_ids = (next(b.ids), next(b.ids))
    twin, twin_ppl = b.notebook(twin_ids, ("Hila Katz", "Itay Bar"))
    first = b.add("twin one", Expected("ok", test_ppl=twin_ppl), form="ipynb", nb=twin, ids=twin_ids)
    second = b.add(
        "twin two", Expected("ok", test_ppl=twin_ppl), form="ipynb", nb=twin, ids=(next(b.ids), next(b.ids))
    )
    b.expected[first].flags, b.expected[second].flags = (
        [f"notebook identical to {second}"],
        [f"notebook identical to {first}"],
    )
    for expected in b.expected.values():
        if expected.test_ppl == -1:  # nothing readable: no perplexity to report
            expected.test_ppl = None
    return b.write(folder / "moodle.zip")


def _first(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()[0]
