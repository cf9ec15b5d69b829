"""The prose answers the build writes into the shipped notebook from the run's record.

Task 5's "Do they make sense?" is the markdown cell tagged ``task5-answer``. The students' own answer, the
file ``answers/task5.md``, replaces the generated one (``hw3.sense.sense_answer``) when it exists. It is a
jinja2 template with the run's numbers available (:data:`ANSWER_VARIABLES`), e.g.
``the test perplexity is {{ "%.1f" | format(test_ppl) }}``. Markdown cells are not part of the cache key,
so a rebuild after editing it re-runs nothing: it re-ships the notebook and re-makes the PDF.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from hw3.files import write_atomic
from hw3.sense import sense_answer

from hw3build.errors import BuildError
from hw3build.notebook.schema import TASK5_ANSWER_TAG, has_tag

OWN_ANSWER_FILE = Path("answers") / "task5.md"
# What answers/task5.md may use: the run's record (metrics.json) under these names.
ANSWER_VARIABLES = {
    "sense": "the measurements of Task 5 (sense_check): pair_share, triple_share, unigram_ppl, ...",
    "test_ppl": "the test perplexity of the best model",
    "best_val_ppl": "the best validation perplexity",
    "best_epoch": "the epoch of the best model",
    "history": "one row per epoch: epoch, train_loss, val_loss, val_ppl, lr, seconds",
    "sentences": "the three generated sentences",
}
# A record of the right shape, for checking answers/task5.md before any training.
_SAMPLE_RECORD = {
    "test_ppl": 1.0,
    "best_val_ppl": 1.0,
    "best_epoch": 1,
    "history": [{"epoch": 1, "train_loss": 0.0, "val_loss": 0.0, "val_ppl": 1.0, "lr": 0.0, "seconds": 0.0}],
    "sentences": ["a", "b", "c"],
    "sense_check": {
        "test_ppl": 1.0, "unigram_ppl": 1.0, "pair_share": 0.0, "pair_share_unigram": 0.0,
        "triple_share": 0.0, "triple_share_unigram": 0.0, "longest_stretch": 0, "longest_in": 1,
        "nwords": 20, "epochs": [{"epoch": 1, "val_ppl": 1.0, "sentence": "a", "pair_share": 0.0}],
    },
}  # fmt: skip


class AnswerError(BuildError, ValueError):
    """answers/task5.md cannot be rendered; the message names the file and what is wrong."""


def own_answer_path(project_root: Path) -> Path:
    return Path(project_root) / OWN_ANSWER_FILE


def render_own_answer(path: Path, metrics: Mapping[str, Any]) -> str:
    """The students' answer with the run's numbers filled in (AnswerError on a template error)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    context = {name: metrics.get(name) for name in ANSWER_VARIABLES if name != "sense"}
    context["sense"] = metrics.get("sense_check") or {}
    try:
        text = path.read_text(encoding="utf-8-sig")
        return env.from_string(text).render(context).strip()
    except UnicodeDecodeError:
        raise AnswerError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except jinja2.TemplateError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        names = ", ".join(ANSWER_VARIABLES)
        raise AnswerError(f"{path}{where}: {exc.message}; the names it may use: {names}") from None


def check_own_answer(project_root: Path) -> bool:
    """Render answers/task5.md against a record of the right shape (before any training): True when it
    exists and renders, False when there is none; AnswerError otherwise."""
    path = own_answer_path(project_root)
    if not path.is_file():
        return False
    text = render_own_answer(path, _SAMPLE_RECORD)
    if not text:
        raise AnswerError(f"{path} is empty: write the answer, or delete the file to use the generated one")
    return True


def task5_answer(metrics: Mapping[str, Any], project_root: Path) -> str:
    """The answer to "Do they make sense?": the students' own, else the one written from the run."""
    path = own_answer_path(project_root)
    if path.is_file():
        text = render_own_answer(path, metrics)
        return (
            text if text.lstrip().startswith("**Do they make sense?**") else f"**Do they make sense?** {text}"
        )
    return sense_answer(metrics["sense_check"])


def fill_answers(notebook_path: Path, metrics: Mapping[str, Any], project_root: Path) -> None:
    """Write the answer into the shipped notebook's cell tagged ``task5-answer`` (a notebook without
    that cell, or a record without Task 5's measurements, is left as it is)."""
    if "sense_check" not in metrics and not own_answer_path(project_root).is_file():
        return
    nb = nbformat.read(notebook_path, as_version=4)
    cells = [c for c in nb.cells if has_tag(c, TASK5_ANSWER_TAG)]
    if not cells:
        return
    answer = task5_answer(metrics, project_root)
    if cells[0].source == answer:
        return
    cells[0].source = answer
    write_atomic(notebook_path, nbformat.writes(nb) + "\n")
