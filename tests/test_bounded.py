"""The validator reads a submission within limits: the hostile zips that crashed it (or took 10 GiB) now
fail a rule with a reason, and a notebook whose figures or outputs were stripped fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import (
    bomb_member,
    deep_expression,
    edited,
    patch_member,
    strip_all_but_prints,
    strip_figures,
    with_figure,
    zip_of,
)
from hw3build.submission.bounded import LimitExceeded, Limits, Unreadable, read_pdf_pages, read_zip
from hw3build.submission.validate import validate_zip
from nbformat.v4 import new_code_cell
from submission_fixtures import STEM, executed_notebook, good_pdf_pages, notebook_bytes, pdf_bytes

NB, PDF = f"{STEM}.ipynb", f"{STEM}.pdf"


def good_members(nb_data: bytes | None = None) -> dict[str, bytes]:
    return {NB: nb_data or notebook_bytes(with_figure(executed_notebook())), PDF: pdf_bytes(good_pdf_pages())}


def validate_bytes(tmp_path: Path, data: bytes, **kwargs):
    path = tmp_path / f"{STEM}.zip"
    path.write_bytes(data)
    return validate_zip(path, **kwargs)


def failures(report) -> dict[str, str]:
    return {check.title: check.detail for check in report.failures}


def test_the_good_submission_with_a_figure_passes(tmp_path: Path) -> None:
    report = validate_bytes(tmp_path, zip_of(good_members()))
    assert report.ok, report.format()
    assert "figure outputs saved" in [c.title for c in report.checks]


@pytest.mark.parametrize(
    ("patch", "reason"),
    [({"flag_bits": 0x1}, "encrypted"), ({"method": 9}, "compression method 9")],
    ids=["encrypted-flag", "unknown-compression"],
)
def test_a_member_it_cannot_inflate_fails_the_zip_rule(tmp_path: Path, patch: dict, reason: str) -> None:
    data = patch_member(zip_of(good_members()), NB, **patch)
    report = validate_bytes(tmp_path, data)  # was RuntimeError / NotImplementedError
    assert reason in failures(report)["zip opens"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda nb: nb.metadata.__setitem__("papermill", ["exception"]), "metadata.papermill is a list"),
        (
            lambda nb: nb.metadata.__setitem__("papermill", {"parameters": "profile=full"}),
            "metadata.papermill.parameters is a str",
        ),
    ],
    ids=["papermill-list", "parameters-string"],
)
def test_mangled_papermill_metadata_fails_a_rule(tmp_path: Path, change, expected: str) -> None:
    data = zip_of(good_members(edited(with_figure(executed_notebook()), change)))
    report = validate_bytes(tmp_path, data)  # was AttributeError
    assert expected in failures(report)["papermill metadata well-formed"]


def test_a_cell_too_deep_to_parse_does_not_crash(tmp_path: Path) -> None:
    def add_deep_cell(nb) -> None:
        nb.cells.append(new_code_cell(deep_expression(), execution_count=99, outputs=[]))

    data = zip_of(good_members(edited(with_figure(executed_notebook()), add_deep_cell)))
    report = validate_bytes(tmp_path, data)  # was RecursionError
    assert report.ok, report.format()


def test_a_bomb_is_refused_from_its_header_before_inflating(tmp_path: Path) -> None:
    limits = Limits(max_member_bytes=4 << 20, max_total_bytes=8 << 20)
    data = bomb_member(NB, 16 << 20)
    report = validate_bytes(tmp_path, data, limits=limits)
    assert failures(report)["zip opens"].startswith("member size:")


def test_a_header_that_lies_about_the_size_never_yields_the_member() -> None:
    data = patch_member(zip_of({NB: bytes(8 << 20)}), NB, size=1024)  # 8 MiB that claims 1 KiB
    assert read_zip(data, [], Limits(max_member_bytes=1 << 20))  # the listing looks harmless
    with pytest.raises(Unreadable):
        read_zip(data, [NB], Limits(max_member_bytes=1 << 20))


def test_members_are_chosen_by_name_before_anything_is_inflated() -> None:
    data = zip_of({**good_members(), "junk.bin": bytes(1 << 20)})
    _, contents = read_zip(data, [NB, PDF], Limits(max_member_bytes=2 << 20, max_total_bytes=3 << 20))
    assert set(contents) == {NB, PDF}


def test_too_many_members_and_pages_are_limits() -> None:
    with pytest.raises(LimitExceeded, match="^members:"):
        read_zip(zip_of({f"f{i}": b"" for i in range(11)}), None, Limits(max_members=10))
    with pytest.raises(LimitExceeded, match="^PDF pages:"):
        read_pdf_pages(pdf_bytes([["page"]] * 6), Limits(max_pdf_pages=5))


@pytest.mark.parametrize("strip", [strip_figures, strip_all_but_prints], ids=["figures", "all-but-prints"])
def test_stripped_outputs_fail(tmp_path: Path, strip) -> None:
    nb = with_figure(executed_notebook())
    data = zip_of(good_members(edited(nb, strip)))
    report = validate_bytes(tmp_path, data)
    figure_cell = len(nb.cells) - 1  # the notebook's index, as the other rules name cells
    assert failures(report)["figure outputs saved"].startswith(f"cells [{figure_cell}] draw a figure")
