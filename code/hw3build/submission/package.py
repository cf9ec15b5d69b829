"""The submission zip: exactly ``ece046211_hw3_<id1>_<id2>.ipynb`` and ``.pdf`` in
``ece046211_hw3_<id1>_<id2>.zip`` (the names: :mod:`hw3build.submission.assignment`).

Deterministic (same inputs, same bytes: fixed member order, timestamps and permissions) and atomic
(``hw3.files.write_atomic``), so an interrupted or failed build never leaves a half-written zip and never
removes the last good one.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path
from typing import BinaryIO

from hw3.files import write_atomic

from hw3build.submission.assignment import submission_members, submission_stem

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold; used without SOURCE_DATE_EPOCH
MEMBER_MODE = 0o100644  # a regular file, rw-r--r--


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """Entry timestamp: ``SOURCE_DATE_EPOCH`` (UTC) when set, else a constant; never the clock."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ZIP_EPOCH
    try:
        stamp = time.gmtime(int(epoch))
    except ValueError:
        raise ValueError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer number of seconds") from None
    if stamp.tm_year < 1980:
        return ZIP_EPOCH
    # Zip stores times with 2-second resolution; round down so the value is exact and stable.
    return (
        stamp.tm_year,
        stamp.tm_mon,
        stamp.tm_mday,
        stamp.tm_hour,
        stamp.tm_min,
        stamp.tm_sec - stamp.tm_sec % 2,
    )


def make_zip(ipynb: str | Path, pdf: str | Path, id1: str, id2: str, dist_dir: str | Path) -> Path:
    """Write ``dist_dir/ece046211_hw3_<id1>_<id2>.zip`` holding the notebook and the PDF under the
    required names, and return its path."""
    notebook_name, pdf_name = submission_members(id1, id2)
    members = [(notebook_name, Path(ipynb).read_bytes()), (pdf_name, Path(pdf).read_bytes())]
    date_time = zip_timestamp()

    def write(raw: BinaryIO) -> None:
        with zipfile.ZipFile(raw, "w") as archive:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, whatever machine builds it, so external_attr means the same
                info.external_attr = MEMBER_MODE << 16
                archive.writestr(info, data, compresslevel=9)

    return write_atomic(Path(dist_dir) / f"{submission_stem(id1, id2)}.zip", write)
