"""The submission zip: exactly ``ece046211_hw3_<id1>_<id2>.ipynb`` and ``.pdf`` in
``ece046211_hw3_<id1>_<id2>.zip``.

Deterministic (same inputs, same bytes: fixed member order, timestamps and permissions) and atomic (written
under a temporary name in the destination folder, then renamed), so an interrupted or failed build never
leaves a half-written zip and never removes the last good one.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import zipfile
from pathlib import Path

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold; used without SOURCE_DATE_EPOCH
MEMBER_MODE = 0o100644  # a regular file, rw-r--r--
_ID = re.compile(r"^\d{9}$")


def submission_stem(id1: str, id2: str) -> str:
    """``ece046211_hw3_<id1>_<id2>``, the name the course requires."""
    for id_number in (id1, id2):
        if not (isinstance(id_number, str) and _ID.match(id_number)):
            raise ValueError(f"student id {id_number!r} must be a string of exactly 9 digits")
    return f"ece046211_hw3_{id1}_{id2}"


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
    ipynb, pdf, dist_dir = Path(ipynb), Path(pdf), Path(dist_dir)
    stem = submission_stem(id1, id2)
    members = [(f"{stem}.ipynb", ipynb.read_bytes()), (f"{stem}.pdf", pdf.read_bytes())]
    dist_dir.mkdir(parents=True, exist_ok=True)
    target = dist_dir / f"{stem}.zip"
    date_time = zip_timestamp()

    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".zip.tmp", dir=dist_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, whatever machine builds it, so external_attr means the same
                info.external_attr = MEMBER_MODE << 16
                archive.writestr(info, data, compresslevel=9)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        tmp.chmod(0o644)  # mkstemp creates 0600; a zip someone else unpacks should be readable
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
