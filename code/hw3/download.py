"""Getting WikiText-2 (v1, tokenised): an offline folder, the per-user cache, or a download.

Order: an explicit folder (`data_dir` or `$HW3_DATA_DIR`), then the cache (`$HW3_CACHE_DIR` or
the OS cache folder), then each mirror in turn. Whatever the source, the three `wiki.*.tokens`
files are checked against the published release's hashes before use; a bad download is deleted,
never used. pooch does the HTTP transfer (temp file, atomic move, progress bar); extraction is ours
because only three members are wanted and members that would land outside the target folder
must be refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import pooch

SPLIT_FILES = {
    "train": "wiki.train.tokens",
    "valid": "wiki.valid.tokens",
    "test": "wiki.test.tokens",
}

# sha256 of the files in the published wikitext-2-v1.zip (same bytes as ../shared/data/wikitext-2).
FILE_SHA256 = {
    "wiki.train.tokens": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}

# Live mirrors of wikitext-2-v1.zip, tried in order. The original S3 bucket (torchtext's URL)
# answers 403 today but is kept last in case it returns. $HW3_WIKITEXT_URLS (space-separated)
# replaces the list.
MIRRORS = [
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
]

# wikitext.smerity.com rejects Python's default user agent.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) hw3-wikitext-fetch/1.0"

# Caps on what a mirror can make us store and hash: the published zip is 4.5 MB and its largest
# member (wiki.train.tokens) 10.8 MB; room to spare, but a bad mirror cannot fill the disk.
MAX_DOWNLOAD_BYTES = 32 * 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024


class DataError(RuntimeError):
    """The data could not be found, fetched or verified; the message says what to do."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_folder(folder: str | Path) -> Path:
    """Check that `folder` holds the three files with the right hashes;
    raise DataError naming any bad one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"WikiText-2 folder {folder} does not exist")
    problems = []
    for name, expected in FILE_SHA256.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{folder} has no {name}")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(
                f"{path} is not the published WikiText-2 v1 file: sha256 {actual}, "
                f"expected {expected}"
            )
    if problems:
        raise DataError(
            "; ".join(problems) + f" (a WikiText-2 folder holds {', '.join(FILE_SHA256)})"
        )
    return folder


def default_cache_dir() -> Path:
    return Path(os.environ.get("HW3_CACHE_DIR") or pooch.os_cache("hw3"))


def _cache_lock(folder: Path):
    """A cross-process lock so two builds never extract into the cache at once."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import portalocker
    except ImportError:  # e.g. the notebook on Colab: a single process uses its cache
        return contextlib.nullcontext()
    return portalocker.Lock(str(folder / ".lock"), mode="a", timeout=900, fail_when_locked=False)


class CappedWriter:
    """A binary file wrapper that refuses to hold more than `limit` bytes (DataError)."""

    def __init__(self, raw, limit: int, what: str) -> None:
        self.raw, self.limit, self.what, self.written = raw, limit, what, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.limit:
            raise DataError(f"{self.what} is larger than {self.limit:,} bytes: refused")
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class CappedDownloader:
    """pooch's HTTP downloader, stopping a transfer past MAX_DOWNLOAD_BYTES."""

    def __init__(self, limit: int, **kwargs) -> None:
        self.limit = limit
        self.http = pooch.HTTPDownloader(**kwargs)

    def __call__(self, url: str, output_file, pooch_obj, check_only: bool = False):
        if check_only:
            return self.http(url, output_file, pooch_obj, check_only=True)
        with open(output_file, "w+b") as raw:
            capped = CappedWriter(raw, self.limit, f"the download from {url}")
            return self.http(url, capped, pooch_obj)


def _safe_member_target(root: Path, member: str) -> Path:
    """Where `member` would be extracted under `root`; DataError if that is outside `root`."""
    pure = PurePosixPath(member.replace("\\", "/"))
    target = (root / pure).resolve()
    if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(root.resolve()):
        raise DataError(f"refusing archive member {member!r}: it would be extracted outside {root}")
    return target


def extract_wikitext(archive: str | Path, dest: str | Path) -> Path:
    """Extract the three token files of `archive` into `dest` (flat) and verify them.

    Any member whose path would escape the folder makes the whole archive refused.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.namelist()
            for member in members:
                _safe_member_target(dest, member)
            for name in FILE_SHA256:
                found = [m for m in members if PurePosixPath(m).name == name]
                if not found:
                    raise DataError(f"archive {archive} has no member named {name}")
                with zf.open(found[0]) as src, open(dest / name, "wb") as out:
                    capped = CappedWriter(out, MAX_MEMBER_BYTES, f"archive member {found[0]}")
                    shutil.copyfileobj(src, capped)
    except zipfile.BadZipFile as exc:
        raise DataError(
            f"archive {archive} is not a valid zip file ({exc}): corrupted or truncated"
        ) from exc
    return verify_folder(dest)


def download_wikitext2(
    cache_dir: Path, urls: list[str] | None = None, progressbar: bool = True
) -> Path:
    """Download wikitext-2-v1.zip from the first mirror that gives verified files;
    return the folder."""
    urls = (
        urls if urls is not None else (os.environ.get("HW3_WIKITEXT_URLS", "").split() or MIRRORS)
    )
    target = cache_dir / "wikitext-2"
    cache_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        staging = Path(tempfile.mkdtemp(prefix="wikitext-", dir=cache_dir))
        try:
            downloader = CappedDownloader(
                MAX_DOWNLOAD_BYTES,
                progressbar=progressbar,
                headers={"User-Agent": USER_AGENT},
                timeout=60,
            )
            archive = pooch.retrieve(
                url, known_hash=None, fname="wikitext-2-v1.zip", path=staging, downloader=downloader
            )
            extract_wikitext(archive, staging / "wikitext-2")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "wikitext-2", target)
            return target
        except Exception as exc:  # a refused, failed or bad transfer: note it, try the next mirror
            errors.append(f"  {url}: {exc}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise DataError(
        "could not download WikiText-2 from any mirror:\n"
        + "\n".join(errors)
        + "\n"
        + HOW_TO_PROVIDE
    )


HOW_TO_PROVIDE = (
    "To work offline, get wikitext-2-v1.zip (https://wikitext.smerity.com/wikitext-2-v1.zip) "
    "on a machine\n"
    "with internet, unzip it, and point the build at the folder holding wiki.train.tokens,\n"
    "wiki.valid.tokens and wiki.test.tokens: `--data-dir DIR` or `export HW3_DATA_DIR=DIR`\n"
    "(or data_dir in submission.toml)."
)


def wikitext2_dir(
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    urls: list[str] | None = None,
    offline: bool | None = None,
) -> Path:
    """The folder holding verified `wiki.{train,valid,test}.tokens`:
    offline folder, cache, or download."""
    data_dir = data_dir or os.environ.get("HW3_DATA_DIR")
    if data_dir:
        return verify_folder(Path(data_dir).expanduser())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if offline is None:
        offline = os.environ.get("HW3_OFFLINE", "") not in ("", "0")
    with _cache_lock(cache):
        cached = cache / "wikitext-2"
        if cached.is_dir():
            try:
                return verify_folder(cached)
            except DataError:
                shutil.rmtree(cached)  # a damaged cache is never used; fetch it again
        if offline:
            raise DataError(
                f"offline (HW3_OFFLINE) and no cached copy in {cache}.\n" + HOW_TO_PROVIDE
            )
        return download_wikitext2(cache, urls)
