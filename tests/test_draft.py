"""A draft is what was run, not the profile's name: the notebook header, the cover and the record agree."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from hw3.hparams import profile_defaults
from hw3build.draft import draft_reasons
from hw3build.notebook.render import render_notebook
from hw3build.record import collect_record
from hw3build.report.report_context import cover_context
from hw3build.submission.config import parse_config
from submission_fixtures import ID1, ID2

STUDENTS = [
    {"name": "Noa Levi", "email": "noa@campus.technion.ac.il", "id": ID1},
    {"name": "Dan Cohen", "email": "dan@campus.technion.ac.il", "id": ID2},
]


def full_config(**hparams):
    return parse_config({"profile": "full", "students": STUDENTS, "hparams": hparams})


@pytest.mark.parametrize(
    ("hparams", "draft"),
    [({}, False), ({"max_train_batches": 150}, True), ({"epochs": 1}, True), ({"max_eval_batches": 5}, True)],
)
def test_a_full_profile_run_cut_short_is_a_draft_everywhere(
    tmp_path: Path, hparams: dict, draft: bool
) -> None:
    config = full_config(**hparams)
    assert bool(draft_reasons("full", config.hparams.to_dict())) is draft
    header = nbformat.read(render_notebook(config, tmp_path / "n.ipynb"), as_version=4).cells[0].source
    assert ("DRAFT" in header) is draft
    metrics = {"profile": "full", "hparams": config.hparams.to_dict(), "test_ppl": 120.0}
    cover = cover_context(metrics, config, 0)
    assert cover["draft"] is draft
    assert ("DRAFT" in cover["profile_line"]) is draft
    assert collect_record(config, metrics=metrics)["draft"] is draft


def test_the_quick_profile_is_a_draft_and_the_full_one_is_not() -> None:
    assert draft_reasons("quick", profile_defaults("quick").to_dict())
    assert draft_reasons("full", profile_defaults("full").to_dict()) == []
    assert draft_reasons("full", {**profile_defaults("full").to_dict(), "epochs": 12}) == []
