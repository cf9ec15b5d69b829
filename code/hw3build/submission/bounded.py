"""Read an untrusted submission within limits: a zip's members, a notebook, a PDF's text.

Every reader either returns what it read or raises :class:`Unreadable` (the file is broken) or
:class:`LimitExceeded` (it is too big, too deep or too slow), both with a message for a person. Nothing a
submission holds makes them raise anything else: ``invoke validate`` and ``invoke grade`` share them. The
limits and why they are what they are: docs/grading.md.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import nbformat

from hw3build.errors import BuildError

MiB = 1 << 20
# The methods Python's zipfile can inflate; anything else (e.g. Deflate64, 9) raises NotImplementedError.
SUPPORTED_COMPRESSION = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """How much of a submission is read; a submission beyond one of them is refused with its name. Zips are
    opened two deep at most: a course's archive holding a student's zip (hw3grade reports a third level
    and never opens it)."""

    max_members: int = 200  # entries in one zip (a Moodle archive holds many zips: see for_archive)
    max_member_bytes: int = 256 * MiB  # one member, uncompressed
    max_total_bytes: int = 512 * MiB  # all the members read from one zip, uncompressed
    max_pdf_pages: int = 300
    pdf_seconds: float = 60.0  # extracting a PDF's text
    max_notebook_bytes: int = 128 * MiB

    def for_archive(self) -> Limits:
        """The limits for a course's whole download: many members, one submission's size each."""
        # members are read one submission at a time, each under the other limits
        return dataclasses.replace(self, max_members=100_000, max_total_bytes=1 << 62)


DEFAULT_LIMITS = Limits()


class Unreadable(BuildError):
    """The file is not what it claims to be (not a zip, an encrypted member, a broken notebook)."""


# The names LimitExceeded uses (its message starts with one of them and a colon).
LIMIT_NAMES = (
    "members",
    "member size",
    "total size",
    "nesting",
    "notebook size",
    "PDF pages",
    "PDF parse time",
    "time",
    "memory",
    "crash",
)


class LimitExceeded(BuildError):
    """The file is beyond one of :class:`Limits`; ``limit`` names which."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit


@dataclass(frozen=True)
class Member:
    name: str
    size: int  # uncompressed, as its header claims
    is_dir: bool


def list_zip(source: str | Path | bytes, limits: Limits = DEFAULT_LIMITS) -> list[Member]:
    """The members of a zip from its central directory (nothing inflated), checked against the limits."""
    with _open_zip(source) as archive:
        return _members(archive, limits)


def read_zip(
    source: str | Path | bytes,
    wanted: Callable[[str], bool] | Iterable[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[list[Member], dict[str, bytes]]:
    """The listing and the contents of the ``wanted`` members (names, or a predicate; None = every file).

    Members are chosen by name before anything is inflated; sizes are checked from the headers first and
    again while inflating (a header may lie).
    """
    if wanted is None:
        choose: Callable[[str], bool] = lambda name: True  # noqa: E731
    elif callable(wanted):
        choose = wanted
    else:
        names = set(wanted)
        choose = names.__contains__
    with _open_zip(source) as archive:
        members = _members(archive, limits)
        contents: dict[str, bytes] = {}
        budget = limits.max_total_bytes
        for info in archive.infolist():
            if info.is_dir() or not choose(info.filename):
                continue
            data = _inflate(archive, info, min(limits.max_member_bytes, budget))
            budget -= len(data)
            contents[info.filename] = data
    return members, contents


def _open_zip(source: str | Path | bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise Unreadable(f"not a readable zip ({type(exc).__name__}: {exc})") from None


def _members(archive: zipfile.ZipFile, limits: Limits) -> list[Member]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise LimitExceeded("members", f"{len(infos)} entries, at most {limits.max_members}")
    total = 0
    for info in infos:
        if info.file_size > limits.max_member_bytes:
            raise LimitExceeded(
                "member size", f"{info.filename} claims {info.file_size / MiB:.0f} MiB uncompressed"
            )
        total += info.file_size
    if total > limits.max_total_bytes:
        raise LimitExceeded("total size", f"the members claim {total / MiB:.0f} MiB uncompressed")
    return [Member(info.filename, info.file_size, info.is_dir()) for info in infos]


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    if info.flag_bits & 0x1:
        raise Unreadable(f"{info.filename} is encrypted")
    if info.compress_type not in SUPPORTED_COMPRESSION:
        raise Unreadable(
            f"{info.filename} uses compression method {info.compress_type}, which is not supported"
        )
    out = bytearray()
    try:
        with archive.open(info) as stream:
            _copy_bounded(stream, out, budget, info.filename)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
        ValueError,
    ) as exc:
        raise Unreadable(f"{info.filename} does not inflate ({type(exc).__name__}: {exc})") from None
    return bytes(out)


def _copy_bounded(stream: IO[bytes], out: bytearray, budget: int, name: str) -> None:
    while chunk := stream.read(_CHUNK):
        out += chunk
        if len(out) > budget:
            raise LimitExceeded("member size", f"{name} inflates past {budget / MiB:.0f} MiB")


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def read_notebook(data: bytes, limits: Limits = DEFAULT_LIMITS) -> nbformat.NotebookNode:
    """A notebook that parses and matches the nbformat schema, else :class:`Unreadable`."""
    if len(data) > limits.max_notebook_bytes:
        raise LimitExceeded("notebook size", f"{len(data) / MiB:.0f} MiB")
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except (RecursionError, MemoryError) as exc:
        raise LimitExceeded("nesting", f"the notebook's JSON is too deep ({type(exc).__name__})") from None
    except Exception as exc:  # nbformat and json raise many types for a broken file
        raise Unreadable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return nb


def mapping(value: Any) -> dict:
    """``value`` when it is a JSON object, else an empty one (metadata a submission may have mangled)."""
    return value if isinstance(value, dict) else {}


def papermill_metadata(nb: nbformat.NotebookNode) -> tuple[dict, list[str]]:
    """``metadata.papermill`` and its ``parameters`` as mappings, with what was malformed (if anything)."""
    problems = []
    raw = nb.metadata.get("papermill", {})
    meta = mapping(raw)
    if raw is not meta:
        problems.append(f"metadata.papermill is a {type(raw).__name__}, not an object")
    params = meta.get("parameters", {})
    if not isinstance(params, dict):
        problems.append(f"metadata.papermill.parameters is a {type(params).__name__}, not an object")
    return {**meta, "parameters": mapping(params)}, problems


def read_pdf_pages(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """The text of each page; the page count is checked before any text is extracted."""
    from pypdf import PdfReader

    started = time.monotonic()
    try:
        reader = PdfReader(io.BytesIO(data))
        count = len(reader.pages)
    except (RecursionError, MemoryError) as exc:
        raise LimitExceeded("nesting", f"the PDF's objects are too deep ({type(exc).__name__})") from None
    except Exception as exc:  # pypdf raises many types on a broken file
        raise Unreadable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if count > limits.max_pdf_pages:
        raise LimitExceeded("PDF pages", f"{count} pages, at most {limits.max_pdf_pages}")
    pages = []
    for number in range(count):
        if time.monotonic() - started > limits.pdf_seconds:
            raise LimitExceeded("PDF parse time", f"over {limits.pdf_seconds:.0f} s after {number} pages")
        try:
            pages.append(reader.pages[number].extract_text() or "")
        except (RecursionError, MemoryError) as exc:
            raise LimitExceeded("nesting", f"page {number + 1} is too deep ({type(exc).__name__})") from None
        except Exception as exc:
            raise Unreadable(f"page {number + 1}: {type(exc).__name__}: {str(exc)[:200]}") from None
    return pages
