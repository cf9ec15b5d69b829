"""The PDF report: notebook cleaning for print, TeX log checks, and whole reports built from fixtures
(a small executed notebook made with nbformat, metrics per the interface schema, stand-in theory files).

Tests marked ``tex`` need TeX Live (xelatex, latexmk, pandoc): without it they fail with the install
command, they are not skipped.
"""

from __future__ import annotations

import base64
import io
import re
import unicodedata
from pathlib import Path

import nbformat
import pytest
from hw3.hparams import profile_defaults
from hw3.metrics import METRICS_SCHEMA
from hw3build.preflight import PreflightError, check_cover, check_name_glyphs
from hw3build.record import collect_record
from hw3build.report import latex
from hw3build.report.inputs import ReportInputs
from hw3build.report.latex import (
    APT_INSTALL,
    CoverOverflow,
    ReportError,
    TexMissing,
    check_tex_tools,
    escape_latex,
    plan_glyphs,
    read_log,
    run_latexmk,
)
from hw3build.report.nbtex import (
    clean_stream_text,
    collapse_carriage_returns,
    display_width,
    mark_completed_lines,
    notebook_to_latex,
    prepare_notebook,
    tighten_inline_math,
    wrap_columns,
)
from hw3build.report.report import build_report
from hw3build.report.report_context import answer_index, dependency_rows, support_groups, task_results
from hw3build.submission.assignment import QUESTIONS
from hw3build.submission.config import parse_config
from hw3build.submission.literal import markdown_literal
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from pypdf import PdfReader

TASK_HEADINGS = (
    "Task 1 - Loading and Observing the Data",
    "Task 2 - Preparing the Data - Separating to Inputs and Targets",
    "Task 3 - Define Hyperparameters and Initialize the Model",
    "Task 4 - Train and Evaluate the Language Model",
    "Task 5 - Generate Sentences",
)
TQDM_FRAMES = "train:  37%|███▋      | 37/100 [00:01<00:02]\rtrain: 100%|██████████| 100/100 [00:03<00:00]\n"
LONG_LINE = (
    "| epoch   1 |   200/ 2928 batches | " + "lr 0.00 | ms/batch 123.45 | loss  7.00 | ppl  1096.63 | " * 3
)
LONG_TOKEN = "sha256:" + "0123456789abcdef" * 8
SUPPORT_SOURCE = '''# The torchtext replacement: the tokenizer.
MIRRORS = ["https://example.org/w.zip"]


def basic_english_tokenize(line: str) -> list[str]:
    """Tokenize one line as torchtext did. More words that the index leaves out."""
    return line.lower().split()


def _helper():
    return 1


tokenizer = basic_english_tokenize
words = basic_english_tokenize("A b")
'''
SENTENCES = [
    "the game was released in north america on 12 march 2011 , and the first of the series",
    "in 1998 , the company <unk> a new version of the song , which was also released",
    "he was born in the city of <unk> , where he spent most of his early life",
]


# ------------------------------------------------------------------------------------------ fixtures


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot([1, 2, 3], [7.0, 6.1, 5.6], label="train")
    ax.plot([1, 2, 3], [6.6, 6.0, 5.8], label="valid")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    return buffer.getvalue()


def make_notebook(png: bytes) -> nbformat.NotebookNode:
    """A small executed notebook shaped like ours: front matter, Part 2, Tasks 1-5, typical outputs."""
    image = base64.b64encode(png).decode()
    cells = [
        new_markdown_cell(
            '# <img src="https://img.icons8.com/x.png"> ECE 046211 - HW3\n![logo](https://x.org/a.png)'
        ),
        new_markdown_cell("### Students Information\n| Name | ID |\n|---|---|\n| Student 1 | 123456789 |"),
        new_markdown_cell("## Part 1 - Theory\nThe answers are in the PDF."),
        new_markdown_cell("## Part 2 - Code Assignments\nThe model maps $ x_t $ to $p(x_{t+1})$."),
        tagged(new_code_cell("lr = 0.005\ndata_dir = None", execution_count=1), "parameters"),
        tagged(
            new_code_cell('# Parameters\nlr = 0.005\ndata_dir = None\nout_dir = "."', execution_count=2),
            "injected-parameters",
        ),
        new_code_cell(
            "import torch\nprint(torch.__version__)",
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="2.13.0\n")],
        ),
        tagged(new_markdown_cell("### Support code\nCollapsed cells: the torchtext replacement."), "support"),
        tagged(new_code_cell(SUPPORT_SOURCE, execution_count=4), "support"),
        new_markdown_cell(f"### {TASK_HEADINGS[0]}\n1. Run the cells.\n2. Print the shape."),
        new_code_cell(
            "print(train_data.shape)  # [sequence position, batch column]\nx = 1  # completed",
            execution_count=5,
            outputs=[new_output("stream", name="stdout", text="torch.Size([102499, 20])\n")],
        ),
        new_markdown_cell(f"### {TASK_HEADINGS[1]}\nFor `bptt=2`: `data=[a, b]`, target $\\approx$ shifted."),
        new_code_cell(
            "data, target = get_batch(train_data, 0, 2)\ndata",
            execution_count=3,
            outputs=[
                new_output(
                    "execute_result",
                    execution_count=3,
                    data={
                        "text/plain": "tensor([[   9,   59],\n        [  10,   11]])",
                        "text/html": "<b>tensor</b>",
                    },
                )
            ],
        ),
        new_markdown_cell(f"### {TASK_HEADINGS[2]}"),
        new_code_cell(
            "print(hparams)\nprint(LONG)",
            execution_count=4,
            outputs=[new_output("stream", name="stdout", text=f"emsize : 250\n{LONG_LINE}\n{LONG_TOKEN}\n")],
        ),
        new_markdown_cell(f"### {TASK_HEADINGS[3]}\nTraining ≈ 3 minutes."),
        new_code_cell(
            "for epoch in trange(epochs):\n    train(model, bptt)",
            execution_count=5,
            outputs=[
                new_output("stream", name="stderr", text=TQDM_FRAMES),
                new_output("stream", name="stdout", text="| end of epoch   1 | valid ppl   330.12\n"),
            ],
        ),
        new_code_cell(
            "plot_curves(history)",
            execution_count=6,
            outputs=[new_output("display_data", data={"image/png": image, "text/plain": "<Figure>"})],
        ),
        new_markdown_cell(f"### {TASK_HEADINGS[4]}\nDo they make sense? Partly."),
        new_code_cell(
            "for s in sentences:\n    print(s)",
            execution_count=7,
            outputs=[new_output("stream", name="stdout", text="\n".join(SENTENCES) + " 攻殻機動隊\n")],
        ),
    ]
    tagged(cells[cells.index(next(c for c in cells if "train_data.shape" in c.source))], "answer-t1")
    for number, cell in enumerate((c for c in cells if c.cell_type == "code"), start=1):
        cell.execution_count = number  # in order, as Jupyter numbers them
        for output in cell.outputs:
            if output.output_type == "execute_result":
                output.execution_count = number
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def tagged(cell, *tags: str):
    cell.metadata["tags"] = list(tags)
    return cell


def make_metrics(profile: str) -> dict:
    history = [
        {
            "epoch": e,
            "train_loss": 6.9 - 0.4 * e,
            "val_loss": 6.6 - 0.3 * e,
            "val_ppl": 2.718 ** (6.6 - 0.3 * e),
            "lr": 1e-3 / e,
            "seconds": 61.5,
        }
        for e in (1, 2, 3)
    ]
    return {
        "profile": profile,
        "schema": METRICS_SCHEMA,
        "hparams": profile_defaults(profile).to_dict(),
        "run": {
            "device": "cpu",
            "device_name": "CPU (AVX512)",
            "precision": "bf16 autocast",
            "torch_version": "2.13.0",
        },
        "interrupted": False,
        "data": {
            "vocab_size": 28782,
            "itos_sha256": "ab" * 32,
            "train": {"n_tokens": 2049990, "ids_sha256": "cd" * 32},
        },
        "history": history,
        "best_epoch": 3,
        "best_val_loss": 5.7,
        "best_val_ppl": 298.87,
        "test_loss": 5.6543,
        "test_ppl": 285.41,
        "sentences": SENTENCES,
        "timings": {"train_seconds": 184.5, "total_seconds": 230.0},
        "figures": ["figures/loss_ppl.png"],
        "answers": {
            "train_shape": [102499, 20],
            "first_words": "= valkyria chronicles iii = senjō no valkyria 3 : <unk> chronicles ( japanese",
            "batch_data": "= valkyria",
            "batch_target": "valkyria chronicles",
            "ntokens": 28782,
            "parameters": 15929782,
        },
    }


def make_theory(folder: Path) -> tuple[Path, Path]:
    theory, checks = folder / "theory", folder / "checks-out"
    theory.mkdir()
    checks.mkdir()
    (theory / "preamble.tex").write_text("\\usepackage{bm}\n\\newcommand{\\R}{\\mathbb{R}}\n")
    (theory / "q1.tex").write_text(
        "\\subsection{1.4 Multiplications}\\label{ans:q1.4}\n"
        "A self-attention layer costs $O(T^2 D + T^2 M)$ multiplications:\n"
        "\\[ V'_i = \\frac{\\sum_{j=1}^T \\mathrm{sim}(Q_i, K_j) V_j}{\\sum_{r=1}^T \\mathrm{sim}(Q_i, K_r)},"
        " \\quad X \\in \\R^{T \\times d}. \\]\n\\input{checks/q1_checks.tex}\n"
    )
    (theory / "q2.tex").write_text("Initialise $\\bm{W}_l$ with variance $2/n$ and $b_l = 0$.\n")
    (theory / "q3.tex").write_text(
        "By the chain rule, $\\frac{\\partial \\ell}{\\partial W[i,j]}$ sums over time.\n"
    )
    (checks / "answers.json").write_text(
        '{"ans:q1.4": "$T^2(D+M)$ multiplications", "q2": "$\\\\mathrm{Var}\\\\,W_l = 2/(nL)$"}'
    )
    (checks / "q1_checks.tex").write_text(
        "\\begin{tabular}{lr}\\toprule T & mults \\\\ \\midrule 4 & 96 \\\\ \\bottomrule\\end{tabular}\n"
    )
    return theory, checks


def make_config(profile: str, placeholders: bool, students: list[dict] | None = None):
    students = students or (
        [
            {"name": "Student 1", "email": "student_1@campus.technion.ac.il", "id": "123456789"},
            {"name": "Student 2", "email": "student_2@campus.technion.ac.il", "id": "987654321"},
        ]
        if placeholders
        else [
            {"name": "Noa Levi", "email": "noa.levi@campus.technion.ac.il", "id": "100000009"},
            {"name": "Amir Cohen", "email": "amir.c@campus.technion.ac.il", "id": "100000017"},
        ]
    )
    return parse_config({"profile": profile, "students": students})


def make_inputs(
    folder: Path, profile: str, placeholders: bool = True, students: list[dict] | None = None
) -> dict:
    """Everything build_report needs, laid out like build/run/<key>/ and build/theory/."""
    config = make_config(profile, placeholders, students)
    run_dir = folder / "run" / "key"
    (run_dir / "figures").mkdir(parents=True)
    png = _png()
    (run_dir / "figures" / "loss_ppl.png").write_bytes(png)
    nb_path = run_dir / "executed.ipynb"
    nbformat.write(make_notebook(png), nb_path)
    theory, checks = make_theory(folder)
    metrics = make_metrics(profile)
    record = collect_record(
        config,
        metrics=metrics,
        execution={"key": "f" * 64, "cache_hit": False},
    )
    return {
        "executed_nb": nb_path,
        "metrics": metrics,
        "theory_src": theory,
        "checks_dir": checks,
        "config": config,
        "record": record,
        "out_pdf": folder / "report" / "report.pdf",
    }


def report_from(inputs: dict) -> Path:
    """build_report on what make_inputs laid out."""
    values = {k: v for k, v in inputs.items() if k != "out_pdf"}
    return build_report(ReportInputs(**values), inputs["out_pdf"])


def link_targets(reader: PdfReader, page_index: int) -> list[int]:
    """The page (index) each internal link on a page goes to; a link that resolves nowhere fails."""
    named = reader.named_destinations
    targets = []
    for annotation in reader.pages[page_index].get("/Annots", []):
        annotation = annotation.get_object()
        if annotation.get("/Subtype") != "/Link" or "/A" not in annotation:
            continue
        action = annotation["/A"]
        if action.get("/S") != "/GoTo":
            continue
        destination = action["/D"]
        if not isinstance(destination, list):
            destination = named[str(destination)]
            targets.append(reader.get_destination_page_number(destination))
        else:
            targets.append(reader.get_page_number(destination[0].get_object()))
    return targets


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    check_tex_tools()  # fails (with the apt command) rather than skips when TeX is absent
    folder = tmp_path_factory.mktemp("quick")
    inputs = make_inputs(folder, "quick")
    pdf = report_from(inputs)
    return pdf, pdf_text(pdf)


# ----------------------------------------------------------------------------------- unit: cleaning


def test_collapse_carriage_returns_keeps_the_last_frame_of_each_line() -> None:
    assert collapse_carriage_returns("a\r10%\r100% done\nnext\r\n") == "100% done\nnext\n"
    assert collapse_carriage_returns("bar 50%\rbar 100%\r\n") == "bar 100%\n"


def test_clean_stream_text_drops_cursor_codes_but_keeps_colours() -> None:
    text = clean_stream_text("\x1b[A\x1b[2Kstep 1\rstep 2 \x1b[31mred\x1b[0m\x08\n")
    assert text == "step 2 \x1b[31mred\x1b[0m\n"


def test_tighten_inline_math() -> None:
    assert tighten_inline_math("with $ x_t $ and $y$ and $$ z $$") == "with $x_t$ and $y$ and $$ z $$"
    assert tighten_inline_math("`echo $ HOME $` and $ a $") == "`echo $ HOME $` and $a$"  # code untouched


def test_prepare_notebook_shifts_headings_and_drops_front_matter_support_and_html() -> None:
    """The support code cell stays as one line where it ran (its number and its opening comment);
    papermill's injected-parameters cell is printed as papermill leaves it."""
    nb = prepare_notebook(make_notebook(b"png"))
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Students Information" not in markdown and "img" not in markdown
    assert "Part 2" not in markdown  # the report prints its own part heading
    assert "Support code" not in markdown  # the support section is in the appendix
    for heading in TASK_HEADINGS:
        assert f"\n# {heading}" in "\n" + markdown
    assert "$x_t$" in markdown
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 10  # every code cell, the support cell and papermill's parameters included
    (support,) = [c for c in code if "hw3_marker" in c.metadata]
    assert support.metadata.hw3_marker == {
        "what": "The torchtext replacement: the tokenizer.",
        "where": "support",
    }
    assert support.outputs == [] and all(c.metadata["hw3_lines"] > 0 for c in code)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    outputs = [o for c in code for o in c.outputs]
    assert all("text/html" not in o.get("data", {}) for o in outputs)
    stderr = next(o.text for o in outputs if o.get("name") == "stderr")
    assert "37%" not in stderr and "100%|" in stderr


def test_injected_parameters_stay_when_they_differ_from_the_parameters_cell() -> None:
    nb = make_notebook(b"png")
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    injected.source = injected.source.replace("lr = 0.005", "lr = 0.05")
    kept = [c.source for c in prepare_notebook(nb).cells if c.cell_type == "code"]
    assert any("lr = 0.05" in source for source in kept)  # what ran differs: the report shows it


def test_output_text_is_wrapped_at_the_code_width_in_display_columns() -> None:
    assert display_width("ab戦場") == 6 and display_width("e\u0301") == 1
    wrapped = wrap_columns("word " * 30 + "戦場のヴァルキュリア" * 8, 100)
    assert all(display_width(line) <= 100 for line in wrapped.split("\n"))
    assert "".join(wrapped.split()) == "".join(("word " * 30 + "戦場のヴァルキュリア" * 8).split())
    assert wrapped.split("\n")[0] == ("word " * 20).strip()  # broken at a space when there is one
    nb = prepare_notebook(make_notebook(b"png"))
    texts = [
        o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    ]
    assert all(display_width(line) <= 100 for text in texts for line in text.split("\n"))


def test_completed_lines_are_set_on_a_band() -> None:
    latex = (
        "\\PY{n}{x} \\PY{o}{=} \\PY{l+m+mi}{1}  \\PY{c+c1}{\\PYZsh{} completed}\n"
        "    \\PY{n}{y} \\PY{o}{=} \\PY{l+m+mi}{2}  \\PY{c+c1}{\\PYZsh{} completed: train() here}\n"
        "\\PY{n}{z} \\PY{o}{=} \\PY{l+m+mi}{3}  \\PY{c+c1}{\\PYZsh{} not completed}\n"
    )
    lines = mark_completed_lines(latex).split("\n")
    assert lines[0].startswith("\\hwcompleted{\\PY{n}{x}") and lines[0].endswith("completed}}")
    assert lines[1].startswith("    \\hwcompleted{\\PY{n}{y}")  # the indentation stays outside the band
    assert "hwcompleted" not in lines[2]


def test_an_escaped_double_quote_in_markdown_prints_as_typed() -> None:
    """Pandoc wrote a name's escaped double quote as a bare ", which TeX prints as a closing quote on
    both sides; a quotation in prose stays typographic."""
    name = markdown_literal('"Quoted" #!/bin/sh')
    cell = new_markdown_cell(name + ' said "hi"')
    output = new_output("display_data", data={"text/markdown": markdown_literal('a "b"')})
    code = new_code_cell("display(x)", outputs=[output])
    body = notebook_to_latex(new_notebook(cells=[new_markdown_cell("# Part 2"), cell, code])).body
    assert r"\textquotedbl{}Quoted\textquotedbl{}" in body and "said ``hi''" in body
    assert r"a \textquotedbl{}b\textquotedbl{}" in body and '"' not in body


def test_the_answer_index_links_each_part_and_task() -> None:
    metrics = make_metrics("full")
    rows = answer_index(metrics, {"q1.4": "$T^2(D+M)$"}, {"q1.4"}, task_labels={"t1", "t3"})
    keys = [row["key"] for row in rows]
    assert keys == [
        "Q1.1",
        "Q1.2",
        "Q1.3",
        "Q1.4",
        "Q1.5",
        "Q2",
        "Q3.1",
        "Q3.2",
        "T1",
        "T2",
        "T3",
        "T4",
        "T5",
    ]
    by_key = {row["key"]: row for row in rows}
    assert by_key["Q1.4"]["target"] == "ans:q1.4" and by_key["Q1.4"]["result"] == "$T^2(D+M)$"
    assert by_key["Q1.1"]["target"] == "question:1" and "in the answer" in by_key["Q1.1"]["result"]
    assert by_key["Q3.2"]["target"] == "question:3"  # no label yet: the question's section
    assert by_key["T1"]["target"] == "ans:t1" and by_key["T2"]["target"] == "part:2"
    assert (
        "102,499 $\\times$ 20" in by_key["T1"]["result"]
        and "\\textless{}unk\\textgreater{}" in by_key["T1"]["result"]
    )
    assert "28,782 words" in by_key["T3"]["result"] and "15.93 M" in by_key["T3"]["result"]
    assert "test 285.41" in by_key["T4"]["result"] and "validation 298.87" in by_key["T4"]["result"]
    assert by_key["T5"]["result"].count("\\newline") == 2


def test_task_results_without_recorded_answers_point_to_the_tasks() -> None:
    metrics = make_metrics("full")
    del metrics["answers"]
    t1, t2, t3, t4, t5 = task_results(metrics)
    assert "printed in the task" in t1 and "printed in the task" in t3
    assert "285.41" in t4 and SENTENCES[0][:20] in t5


def test_the_support_index_names_each_cell_and_its_purpose() -> None:
    (group,) = support_groups(make_notebook(b"png"))
    assert group == {"cell": "4", "title": "The torchtext replacement: the tokenizer."}


def test_the_dependencies_hold_no_clock_times_and_no_none() -> None:
    metrics = make_metrics("full")
    metrics["run"].update(precision_why="precision = 'auto' and this CPU multiplies bf16 natively", threads=2)
    record = collect_record(make_config("full", False), metrics=metrics)
    record["git"] = {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True}
    rows = dict(dependency_rows(metrics, record))
    assert rows["device"] == "CPU (AVX512)" and "multiplies bf16 natively" in rows["precision"]
    assert rows["code"] == "commit 0123456789ab… with uncommitted changes"
    assert "PyTorch 2.13.0" in rows["software"] and "Python" in rows["software"]
    assert "abababababab…" in rows["vocabulary"] and "ab" * 32 not in rows["vocabulary"]
    text = " ".join(f"{k} {v}" for k, v in rows.items())
    assert "None" not in text and "230" not in text and "seconds" not in text


# ---------------------------------------------------------------------------------- unit: TeX checks


def test_tex_missing_names_the_tool_and_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latex.shutil, "which", lambda tool: None if tool == "latexmk" else "/usr/bin/" + tool)
    with pytest.raises(TexMissing) as info:
        check_tex_tools()
    assert "latexmk" in str(info.value) and APT_INSTALL in str(info.value)


def test_read_log_finds_errors_missing_glyphs_and_overflow() -> None:
    log = (
        "Missing character: There is no █ (U+2588) in font [lmroman10-regular]:mapping=tex-text;!\n"
        "./report.tex:12: Undefined control sequence.\nl.12 \\foo\n"
        "Overfull \\hbox (14.2pt too wide) in paragraph at lines 3--4\n"
        "Overfull \\hbox (0.5pt too wide) in paragraph at lines 5--6\n"
    )
    found = read_log(log)
    assert found.missing_characters == ["█ (U+2588) (font [lmroman10-regular])"]
    assert len(found.errors) == 1 and "Undefined control sequence" in found.errors[0]
    assert len(found.overfull) == 1 and "14.2pt" in found.overfull[0]


@pytest.mark.tex
def test_absent_latex_package_is_reported_with_the_install_command(tmp_path: Path) -> None:
    check_tex_tools()
    tex = tmp_path / "doc.tex"
    tex.write_text("\\documentclass{article}\\usepackage{hwNoSuchPackage}\\begin{document}x\\end{document}\n")
    with pytest.raises(TexMissing) as info:
        run_latexmk(tex, source_date_epoch=0)
    assert "hwNoSuchPackage.sty" in str(info.value) and APT_INSTALL in str(info.value)


def test_glyph_plan_falls_back_or_replaces() -> None:
    check_tex_tools()  # the fonts come with the TeX packages
    plan = plan_glyphs(["≈ █ é 攻 戦場 \U0010fffd"])
    assert "≈" in plan.fallback and "█" in plan.fallback  # Latin Modern lacks them, DejaVu Sans has them
    assert "é" not in plan.fallback and "é" not in plan.unprintable
    assert {"攻", "戦", "場"} <= plan.wide  # only Droid Sans Fallback (setup.sh installs it) has CJK
    assert "\U0010fffd" in plan.unprintable  # a private-use code point no font has
    assert plan.sanitize("a \U0010fffd 攻 b") == "a \N{REPLACEMENT CHARACTER} 攻 b"
    assert r"\newunicodechar{≈}" in plan.preamble()
    assert r"\newfontfamily\hwwidefont{Droid Sans Fallback}" in plan.preamble()


VOWELLED_NAMES = ("שָׂרָה כֹּהֵן", "מֶלֶךְ חַיִּים")  # niqqud; "מֶלֶךְ" ends in a mark (sheva)
CANTILLATION = "\u0596"  # HEBREW ACCENT TIPEHA: no installed font has it


def test_glyph_plan_asks_the_font_that_sets_each_run() -> None:
    check_tex_tools()
    for name in (*VOWELLED_NAMES, "مُحَمَّد فاطِمَةُ"):
        plan = plan_glyphs([name])
        assert plan.unprintable == frozenset(), name  # DejaVu Sans, the run's font, has the marks
        marks = {c for c in name if unicodedata.combining(c)}
        assert marks and not marks & set(plan.fallback)  # never active: set with their letters
        assert {c for c in name if c != " " and not unicodedata.combining(c)} <= set(plan.fallback)
    assert plan_glyphs(["שָׂרָה" + CANTILLATION]).unprintable == {CANTILLATION}  # the run's font lacks it
    assert plan_glyphs(["Sara\u05b8"]).unprintable == {"\u05b8"}  # after a Latin letter: Latin Modern's


def test_a_mark_ending_a_word_stays_in_its_right_to_left_run() -> None:
    assert escape_latex("מֶלֶךְ Levi") == "\\RL{מֶלֶךְ} Levi"
    assert escape_latex("Levi מֶלֶךְ") == "Levi \\RL{מֶלֶךְ}"


@pytest.mark.tex
def test_a_name_with_vowel_points_prints_on_the_cover_with_its_marks(tmp_path: Path) -> None:
    students = [
        {"name": name, "email": f"s{i}@campus.technion.ac.il", "id": id_}
        for i, (name, id_) in enumerate(zip(VOWELLED_NAMES, ("100000009", "100000017"), strict=True))
    ]
    inputs = make_inputs(tmp_path, "quick", students=students)
    check_name_glyphs(inputs["config"])  # the pre-flight check accepts them
    cover = PdfReader(report_from(inputs)).pages[0].extract_text()
    for name in VOWELLED_NAMES:  # every letter and mark, in logical order (pypdf keeps the stream's order)
        assert "".join(name.split()) in "".join(unicodedata.normalize("NFC", cover).split()), cover


WIDE_NAME = "\uff37" * 18  # 18 fullwidth W: as many characters as a word of a name may have, too wide


def test_read_log_names_the_cover_field_that_overflows() -> None:
    log = (
        "hwfield<student 1's name>\nhwfield-end\n"
        "hwfield<student 2's e-mail>\nOverfull \\hbox (7.5pt too wide) in paragraph at lines 9--9\n"
        "[]\\TU/lmss/m/n/10.95 x\nhwfield-end\n"
        "Overfull \\hbox (9.0pt too wide) in paragraph at lines 20--20\n"
    )
    assert read_log(log).overfull_fields == [("student 2's e-mail", "7.5pt")]


@pytest.mark.tex
def test_a_name_wider_than_the_cover_fails_the_report_naming_the_field(tmp_path: Path) -> None:
    students = [
        {"name": "Noa Levi", "email": "noa.levi@campus.technion.ac.il", "id": "100000009"},
        {"name": WIDE_NAME, "email": "amir.c@campus.technion.ac.il", "id": "100000017"},
    ]
    with pytest.raises(CoverOverflow) as info:
        report_from(make_inputs(tmp_path, "quick", students=students))
    assert str(info.value).startswith("student 2's name is wider than the cover's line")
    assert "\n" not in str(info.value)


@pytest.mark.tex
@pytest.mark.parametrize(
    ("name", "email", "refused"),
    [
        (WIDE_NAME, "amir.c@campus.technion.ac.il", "student 2's name"),
        ("\u738b" * 18, "amir.c@campus.technion.ac.il", "student 2's name"),  # CJK: no break inside
        ("Amir Cohen", "W" * 64 + "@campus.technion.ac.il", None),  # the widest address wraps
    ],
)
def test_the_preflight_sets_the_cover_and_refuses_a_field_too_wide(name: str, email: str, refused) -> None:
    config = make_config(
        "quick",
        False,
        [
            {"name": "Noa Levi", "email": "noa.levi@campus.technion.ac.il", "id": "100000009"},
            {"name": name, "email": email, "id": "100000017"},
        ],
    )
    if refused is None:
        check_cover(config)
        return
    with pytest.raises(PreflightError) as info:
        check_cover(config)
    assert str(info.value).startswith(f"{refused} is wider than the cover's line") and "\n" not in str(
        info.value
    )


# ------------------------------------------------------------------------------------ whole reports


@pytest.mark.tex
def test_quick_report_has_cover_draft_headings_and_results(quick_report: tuple[Path, str]) -> None:
    pdf, text = quick_report
    flat = _normalized(text)
    first_page = _normalized(PdfReader(pdf).pages[0].extract_text())
    assert "DRAFT" in first_page
    assert "HW3 — Sequential Tasks and Training Methods" in first_page
    for name in ("Student 1", "Student 2", "student_1@campus.technion.ac.il", "123456789", "987654321"):
        assert name in first_page
    assert "PLACEHOLDER STUDENT DETAILS" in first_page and "Built by" not in first_page
    for question in QUESTIONS:
        assert question.text in flat, question.text
    for heading in TASK_HEADINGS:
        assert heading in flat, heading
    assert "285.41" in flat
    assert SENTENCES[0][:40] in flat
    assert "Part 2 - Code Assignments" in flat and "Appendix" in flat
    assert "$" not in flat and "\\frac" not in flat


@pytest.mark.tex
def test_quick_report_page_two_indexes_the_answers_with_working_links(quick_report: tuple[Path, str]) -> None:
    pdf, _ = quick_report
    reader = PdfReader(pdf)
    index = _normalized(reader.pages[1].extract_text())
    assert "Answers at a glance" in index and "multiplications" in index and "2/(nL)" in index  # answers.json
    assert "102,499 × 20" in index and "15.93 M trainable parameters" in index
    targets = link_targets(reader, 1)
    assert len(targets) >= 13 * 3  # key, question and page of every row link
    assert all(page > 1 for page in targets)  # every link resolves to a page after the index
    task1 = next(i for i, p in enumerate(reader.pages) if "Task 1 - Loading" in (p.extract_text() or ""))
    assert task1 in targets  # T1's row goes to its answer cell
    labels = [reader.page_labels[i] for i in range(len(reader.pages))]
    assert labels == [str(n) for n in range(1, len(labels) + 1)]  # the viewer's numbers, cover = 1
    assert f"2 / {len(labels)}" in _normalized(reader.pages[1].extract_text())


@pytest.mark.tex
def test_quick_report_keeps_support_code_to_the_appendix(quick_report: tuple[Path, str]) -> None:
    pdf, _ = quick_report
    pages = [page.extract_text() or "" for page in PdfReader(pdf).pages]
    appendix = next(i for i, page in enumerate(pages) if "B. Support code" in page)
    assert not any("basic_english_tokenize" in page for page in pages[:appendix])  # the code: in the notebook
    assert any("The torchtext replacement: the tokenizer." in page for page in pages[:appendix])  # its line
    assert "The torchtext replacement" in pages[appendix] and "In [4]" in pages[appendix]
    assert not any("/home/someone" in page for page in pages)
    assert "A. What the run depends on" in pages[appendix - 1] + pages[appendix]


@pytest.mark.tex
def test_quick_report_log_is_clean_and_progress_frames_collapsed(quick_report: tuple[Path, str]) -> None:
    pdf, text = quick_report
    log_text = (pdf.parent / "tex" / "report.log").read_text(encoding="utf-8", errors="replace")
    assert "Missing character" not in log_text
    assert read_log(log_text).overfull == []  # nothing wider than the page (2 pt tolerance)
    assert "100/100" in text and "37/100" not in text
    assert "█" in text  # tqdm's bar glyph survives (DejaVu Sans Mono)
    assert (pdf.parent / "report.tex").is_file()
    assert not list(pdf.parent.glob(".tex-*"))  # the temporary TeX folder was moved away


@pytest.mark.tex
def test_full_report_has_no_draft_marking(tmp_path: Path) -> None:
    check_tex_tools()
    inputs = make_inputs(tmp_path, "full", placeholders=False)
    pdf = report_from(inputs)
    reader = PdfReader(pdf)
    text = pdf_text(pdf)
    assert "DRAFT" not in text and "PLACEHOLDER" not in text
    assert "Noa Levi" in reader.pages[0].extract_text()
    assert reader.metadata.title == "HW3 — Sequential Tasks and Training Methods"


@pytest.mark.tex
def test_latex_error_surfaces_as_report_error(tmp_path: Path) -> None:
    check_tex_tools()
    inputs = make_inputs(tmp_path, "quick")
    (inputs["theory_src"] / "q2.tex").write_text("Broken: \\thisMacroDoesNotExist{x}\n")
    inputs["out_pdf"].parent.mkdir(parents=True)
    inputs["out_pdf"].write_bytes(b"%PDF previous good report")
    with pytest.raises(ReportError) as info:
        report_from(inputs)
    message = str(info.value)
    assert "Undefined control sequence" in message and "thisMacroDoesNotExist" in message
    assert inputs["out_pdf"].read_bytes() == b"%PDF previous good report"  # the old PDF is untouched
    assert (inputs["out_pdf"].parent / "tex-failed" / "report.log").is_file()


def test_incomplete_metrics_are_named(tmp_path: Path) -> None:
    check_tex_tools()
    inputs = make_inputs(tmp_path, "quick")
    del inputs["metrics"]["test_ppl"]
    with pytest.raises(ReportError, match="test_ppl"):
        report_from(inputs)


def test_missing_theory_answer_is_named(tmp_path: Path) -> None:
    check_tex_tools()
    inputs = make_inputs(tmp_path, "quick")
    (inputs["theory_src"] / "q3.tex").unlink()
    with pytest.raises(ReportError, match="q3.tex"):
        report_from(inputs)


@pytest.mark.tex
def test_same_inputs_give_a_byte_identical_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_tex_tools()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    first = report_from(make_inputs(tmp_path / "a", "full", placeholders=False))
    second = report_from(make_inputs(tmp_path / "b", "full", placeholders=False))
    assert first.read_bytes() == second.read_bytes()
    assert "24 November 2025" in PdfReader(first).pages[0].extract_text()  # the cover date follows the epoch
