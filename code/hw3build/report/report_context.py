"""What the report's templates print besides Part 1 and Part 2, each part built by its own function:

- :func:`cover_context`: the students, the date, the profile (a quick build is a DRAFT);
- :func:`answer_index`: page 2, one row per question part and per task with its key result, linked to the
  page that holds it (the theory stage's ``answers.json`` and labels, the run's ``metrics.json``);
- :func:`support_groups` and :func:`dependency_rows`: the appendix (the support code's index; what the run
  depends on). Only what the inputs determine is printed: no clock times, no stage durations.

Every value that is not LaTeX already is escaped here or by the templates' ``e`` filter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

from hw3build.draft import is_draft
from hw3build.notebook.schema import answer_keys
from hw3build.report.latex import escape_latex
from hw3build.report.support_index import support_index
from hw3build.submission.assignment import QUESTION_PARTS, QUESTIONS, TASKS

log = logging.getLogger(__name__)

THEORY_ANSWERS_NAME = "answers.json"  # written by the theory stage next to its tables: key -> LaTeX
SHORT_HASH = 12  # hex digits of a sha256 printed (enough to tell two data sets apart by eye)
TASK_RESULTS = (  # what each task's row of the answer index shows
    "the data's shape and first words",
    "one batch: data and target",
    "the vocabulary and the model's size",
    "validation and test perplexity",
    "three generated sentences",
)
_LABEL = re.compile(r"\\label\{ans:([^}]+)\}")


# --------------------------------------------------------------------------------------------- cover


def cover_context(metrics: Mapping[str, Any], config: Any, epoch: int) -> dict[str, Any]:
    """The cover: students (placeholders marked), date of the run, profile, test perplexity."""
    # What the run trained (its own profile and hyper-parameters) decides a draft (hw3build.draft).
    profile = str(metrics.get("profile") or getattr(config, "profile", "full"))
    configured = getattr(config, "hparams", None)
    hparams = metrics.get("hparams") or (configured.to_dict() if configured is not None else {})
    draft = is_draft(profile, hparams) or is_draft(getattr(config, "profile", None), {})
    students = []
    for student in config.students:
        fields = getattr(student, "placeholder_fields", ())
        placeholder = bool(getattr(student, "is_placeholder", False) or fields)
        students.append(
            {"name": student.name, "email": student.email, "id": student.id, "placeholder": placeholder}
        )
    config_path = getattr(config, "path", None)
    return {
        "draft": draft,
        "profile": profile,
        "profile_line": "a short training run (DRAFT, not the submission)"
        if draft
        else "the full training run (the submission)",
        "date": datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%-d %B %Y"),
        "students": students,
        "has_placeholders": any(s["placeholder"] for s in students),
        "config_name": Path(config_path).name if config_path else "submission.toml",
        "test_ppl": f"{metrics['test_ppl']:.2f}",
    }


# ----------------------------------------------------------------------------------------- answer index


def theory_answers(checks_dir: Path) -> dict[str, str]:
    """The theory stage's ``answers.json`` (part key -> a short LaTeX snippet of the result), keys as
    ``q1.4`` (an ``ans:`` prefix is dropped); empty when the file is absent or unreadable."""
    path = Path(checks_dir) / THEORY_ANSWERS_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring %s: not a JSON object", path)
        return {}
    return {str(k).removeprefix("ans:"): str(v) for k, v in data.items() if isinstance(v, str)}


def theory_labels(theory_dir: Path) -> set[str]:
    """The answer labels the theory files define (``\\label{ans:q1.4}`` -> ``q1.4``)."""
    found: set[str] = set()
    for path in sorted(Path(theory_dir).glob("*.tex")):
        found |= set(_LABEL.findall(path.read_text(encoding="utf-8", errors="replace")))
    return found


def answer_index(
    metrics: Mapping[str, Any],
    answers: Mapping[str, str],
    labels: set[str],
    sanitize=str,
    task_labels: set[str] | None = None,
) -> list[dict[str, str]]:
    """Page 2: one row per question part and per task: ``key`` (Q1.4, T3), ``what`` (escaped), ``result``
    (LaTeX) and ``target`` (the label the row links to). ``labels`` are the theory's answer labels,
    ``task_labels`` the notebook's answer cells (``t1`` ...; None: all of them). A part whose answer has no
    label links to its question, a task without an answer cell to Part 2; a part without a result in
    ``answers.json`` says where to read it."""
    rows = []
    for key, what in QUESTION_PARTS:
        question = key.split(".")[0]
        target = f"ans:{key}" if key in labels else f"question:{question[1:]}"
        result = answers.get(key, r"\emph{in the answer}")
        rows.append({"key": key.upper(), "what": escape_latex(what), "result": result, "target": target})
    results = task_results(metrics, sanitize)
    for number, (heading, what) in enumerate(zip(TASKS, TASK_RESULTS, strict=True), start=1):
        rows.append(
            {
                "key": heading.short,
                "what": escape_latex(what),
                "result": results[number - 1],
                "target": f"ans:t{number}"
                if task_labels is None or f"t{number}" in task_labels
                else "part:2",
            }
        )
    return rows


def task_results(metrics: Mapping[str, Any], sanitize=str) -> list[str]:
    """Each task's key result as LaTeX, from the run's record (``answers`` and the results)."""
    a = metrics.get("answers") or {}

    def words(text: str) -> str:
        return r"\textit{" + escape_latex(sanitize(text)) + "}"

    missing = r"\emph{printed in the task}"
    t1 = missing
    if "train_shape" in a and "first_words" in a:
        rows, columns = a["train_shape"]
        t1 = (
            rf"\texttt{{train\_data}}: {rows:,} $\times$ {columns} (time steps $\times$ sequences); "
            rf"its first 20 words: {words(a['first_words'])}"
        )
    t2 = missing
    if "batch_data" in a and "batch_target" in a:
        t2 = rf"first column, \texttt{{data}}: {words(a['batch_data'])}; \texttt{{target}}: {words(a['batch_target'])}"
    t3 = missing
    if "ntokens" in a and "parameters" in a:
        t3 = f"{a['ntokens']:,} words in the vocabulary; {a['parameters'] / 1e6:.2f} M trainable parameters"
    epochs = len(metrics.get("history", []))
    t4 = (
        f"validation {metrics['best_val_ppl']:.2f} (best epoch, {metrics['best_epoch']} of {epochs}); "
        rf"\textbf{{test {metrics['test_ppl']:.2f}}}"
    )
    sentences = metrics.get("sentences", [])
    t5 = r"\newline ".join(f"{n}. {words(s)}" for n, s in enumerate(sentences, start=1)) or missing
    return [t1, t2, t3, t4, t5]


# ------------------------------------------------------------------------------------------- appendix


def notebook_answer_labels(nb: nbformat.NotebookNode) -> set[str]:
    """The answer cells of the notebook: tag ``answer-t1`` -> ``t1``."""
    return answer_keys(nb.cells)


def support_groups(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The support code's index for the appendix, escaped: per support cell its number and what it is for
    (its opening comment); the code itself, with each definition's docstring, is in the notebook's
    collapsed cell."""
    return [
        {"cell": "" if cell.number is None else str(cell.number), "title": escape_latex(cell.title)}
        for cell in support_index(nb)
    ]


def _short(digest: Any) -> str:
    return str(digest)[:SHORT_HASH] + "…" if digest else ""


def dependency_rows(metrics: Mapping[str, Any], record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the run depends on, as (what, value) rows of escaped text; absent facts are left out."""
    run, data, hparams = metrics.get("run", {}), metrics.get("data", {}), metrics.get("hparams", {})
    versions = record.get("versions", {})
    software = [
        ("Python", versions.get("python")),
        ("PyTorch", run.get("torch_version") or versions.get("torch")),
    ]
    software += [(name.capitalize(), versions.get(name)) for name in ("numpy", "matplotlib")]
    rows = [
        ("profile and seed", f"{metrics.get('profile', '')}, seed {hparams.get('seed', '')}"),
        ("device", run.get("device_name")),
        ("precision", " ".join(filter(None, [run.get("precision"), _paren(run.get("precision_why"))]))),
        ("CPU threads", run.get("threads")),
        ("software", ", ".join(f"{name} {v}" for name, v in software if v)),
    ]
    if data:
        rows.append(
            (
                "vocabulary",
                f"{data.get('vocab_size', 0):,} words (word list sha256 {_short(data.get('itos_sha256'))})",
            )
        )
        splits = [(name, data.get(name, {})) for name in ("train", "valid", "test")]
        rows.append(
            (
                "token ids",
                "; ".join(
                    f"{name} {s.get('n_tokens', 0):,} (sha256 {_short(s.get('ids_sha256'))})"
                    for name, s in splits
                    if s
                ),
            )
        )
    files = record.get("data", {}).get("files", {})
    if files:
        rows.append(
            ("WikiText-2 files", "; ".join(f"{name} {_short(f.get('sha256'))}" for name, f in files.items()))
        )
    git = record.get("git", {})
    if git.get("commit"):
        rows.append(
            (
                "code",
                f"commit {_short(git['commit'])}" + (" with uncommitted changes" if git.get("dirty") else ""),
            )
        )
    return [(escape_latex(k), escape_latex(v)) for k, v in rows if v not in (None, "", "None")]


def _paren(text: Any) -> str:
    return f"({text})" if text else ""


def question_titles() -> list[dict[str, str]]:
    """Part 1's sections: the assignment's question titles, their theory files and labels."""
    return [
        {"title": q.text, "file": f"theory/{q.theory_file}", "label": f"question:{n}"}
        for n, q in enumerate(QUESTIONS, start=1)
    ]
