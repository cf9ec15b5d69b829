"""The packager: the two required names, byte-identical output, atomic replacement."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from hw3build.submission.package import ZIP_EPOCH, make_zip
from hw3build.submission.validate import validate_zip
from submission_fixtures import ID1, ID2, STEM, executed_notebook, good_pdf_pages, notebook_bytes, pdf_bytes


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    ipynb = tmp_path / "in" / "executed.ipynb"
    pdf = tmp_path / "in" / "report.pdf"
    ipynb.parent.mkdir()
    ipynb.write_bytes(notebook_bytes(executed_notebook()))
    pdf.write_bytes(pdf_bytes(good_pdf_pages()))
    return ipynb, pdf


def test_zip_holds_exactly_the_two_renamed_files(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    ipynb, pdf = inputs
    zip_path = make_zip(ipynb, pdf, ID1, ID2, tmp_path / "dist")
    assert zip_path == tmp_path / "dist" / f"{STEM}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == [f"{STEM}.ipynb", f"{STEM}.pdf"]
        assert archive.read(f"{STEM}.ipynb") == ipynb.read_bytes()
        assert archive.read(f"{STEM}.pdf") == pdf.read_bytes()
        for info in archive.infolist():
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_DEFLATED
    assert validate_zip(zip_path, strict=True).ok
    assert sorted(p.name for p in zip_path.parent.iterdir()) == [zip_path.name]  # no temp file left


def test_zip_is_byte_identical_when_built_twice(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    ipynb, pdf = inputs
    first = make_zip(ipynb, pdf, ID1, ID2, tmp_path / "a").read_bytes()
    os.utime(ipynb, (1_000_000_000, 1_000_000_000))  # a different mtime must not matter
    os.utime(pdf, (1_500_000_000, 1_500_000_000))
    second = make_zip(ipynb, pdf, ID1, ID2, tmp_path / "b").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a" / f"{STEM}.zip") as archive:
        assert {info.date_time for info in archive.infolist()} == {ZIP_EPOCH}


def test_source_date_epoch_sets_the_entry_times(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764075601")  # 2025-11-25 13:00:01 UTC
    zip_path = make_zip(*inputs, ID1, ID2, tmp_path / "dist")
    with zipfile.ZipFile(zip_path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2025, 11, 25, 13, 0, 0)}


def test_a_failed_write_keeps_the_previous_zip(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "dist"
    good = make_zip(*inputs, ID1, ID2, dist)
    before = good.read_bytes()
    inputs[1].write_bytes(b"%PDF-1.4 a newer report")

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", disk_full)
    with pytest.raises(OSError, match="No space left"):
        make_zip(*inputs, ID1, ID2, dist)
    assert good.read_bytes() == before
    assert sorted(p.name for p in dist.iterdir()) == [good.name]


def test_a_missing_input_keeps_the_previous_zip(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    good = make_zip(*inputs, ID1, ID2, dist)
    before = good.read_bytes()
    with pytest.raises(FileNotFoundError):
        make_zip(inputs[0], tmp_path / "missing.pdf", ID1, ID2, dist)
    assert good.read_bytes() == before


@pytest.mark.parametrize("bad_id", ["12345678", "1234567890", "12345678x", 123456782])
def test_ids_must_be_nine_digit_strings(inputs: tuple[Path, Path], tmp_path: Path, bad_id) -> None:
    with pytest.raises(ValueError, match="9 digits"):
        make_zip(*inputs, bad_id, ID2, tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())
