"""Find the submissions in a Moodle download: a zip of group folders, a folder of them, or loose files.

Moodle's "Download all submissions" writes one folder per group (``<group>_<n>_assignsubmission_file_/``)
holding what the group uploaded; older versions write the same prefix on each file instead of a folder.
A loose ``.zip``/``.ipynb`` is a submission of its own. Nothing is read here but names and sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hw3build.submission.assignment import ZIP_NAME
from hw3build.submission.bounded import DEFAULT_LIMITS, LimitExceeded, Limits, MiB, list_zip, read_zip

# Moodle's per-submission prefix: the folder (or, flat, the file name prefix) of one group.
MOODLE_FOLDER = re.compile(r"^(?P<group>.+?)_(?P<n>\d+)_assignsubmission_(?:file|onlinetext)_?$")
MOODLE_FLAT = re.compile(r"^(?P<group>.+?_\d+)_assignsubmission_file_(?P<name>.+)$")
# What archivers add and nobody uploaded on purpose: ignored, and said so.
JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")


@dataclass(frozen=True)
class Submission:
    """One group's upload. ``files`` are archive member names (``origin`` "archive") or paths relative to
    ``root`` ("folder"), always ``/``-separated; ``junk`` are the ignored ones."""

    key: str
    origin: str  # archive | folder
    root: str
    files: tuple[str, ...]
    junk: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict, compare=False)
    folder: str = ""  # the group's folder the files sit in ("" for a loose or flat-named file)

    def relative(self, name: str) -> str:
        """``name`` inside the group's folder."""
        return name[len(self.folder) + 1 :] if self.folder and name.startswith(self.folder + "/") else name

    @property
    def group(self) -> str:
        """The group's name as Moodle wrote it (without the participant number and suffix)."""
        folder = self.key.split("/")[-1]
        match = MOODLE_FOLDER.match(folder)
        return match.group("group") if match else folder


def discover(sources: list[str | Path], limits: Limits = DEFAULT_LIMITS) -> list[Submission]:
    """Every submission in ``sources``, sorted by key; raises FileNotFoundError for a missing source and
    hw3build.submission.bounded's errors for an outer archive that cannot be listed."""
    found: list[Submission] = []
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        if source.is_dir():
            found += _from_listing(
                str(source),
                "folder",
                _walk(source),
                {
                    str(p.relative_to(source).as_posix()): p.stat().st_size
                    for p in source.rglob("*")
                    if p.is_file()
                },
            )
        elif source.suffix.lower() == ".zip" and not ZIP_NAME.match(source.name):
            members = [m for m in list_zip(source, limits.for_archive()) if not m.is_dir]
            found += _from_listing(
                str(source), "archive", [m.name for m in members], {m.name: m.size for m in members}
            )
        else:  # a loose upload: a submission zip or notebook (or anything else, which its row reports)
            found.append(
                Submission(
                    source.name,
                    "folder",
                    str(source.parent),
                    (source.name,),
                    (),
                    {source.name: source.stat().st_size},
                )
            )
    keys = [s.key for s in found]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        found = [_renamed(s) if s.key in duplicates else s for s in found]
    return sorted(found, key=lambda s: s.key)


def _renamed(submission: Submission) -> Submission:
    return Submission(
        f"{Path(submission.root).name}/{submission.key}",
        submission.origin,
        submission.root,
        submission.files,
        submission.junk,
        submission.sizes,
        submission.folder,
    )


def _walk(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _from_listing(root: str, origin: str, names: list[str], sizes: dict[str, int]) -> list[Submission]:
    """Group ``names`` by their top-level folder (or Moodle's flat prefix); a top-level file is its own."""
    groups: dict[str, list[str]] = {}
    junk: dict[str, list[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if len(parts) > 1 and parts[0] != "__MACOSX":
            key = parts[0]
        elif len(parts) > 1:  # __MACOSX/<group>/...: the group it shadows
            key = parts[1] if len(parts) > 2 else parts[0]
        else:
            flat = MOODLE_FLAT.match(name)
            key = flat.group("group") + "_assignsubmission_file_" if flat else name
        (junk if JUNK.search(name) else groups).setdefault(key, []).append(name)
    keys = sorted(set(groups) | set(junk))
    return [
        Submission(
            key,
            origin,
            root,
            tuple(groups.get(key, ())),
            tuple(junk.get(key, ())),
            sizes,
            key if any(n.startswith(key + "/") for n in groups.get(key, ())) else "",
        )
        for key in keys
    ]


def upload_name(submission: Submission, name: str) -> str:
    """The file's name as the students uploaded it (Moodle's folder or flat prefix taken off)."""
    base = PurePosixPath(name).name
    flat = MOODLE_FLAT.match(base)
    return flat.group("name") if flat else base


def read_file(submission: Submission, name: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """One file of ``submission``, within ``limits`` (hw3build.submission.bounded's errors otherwise)."""
    if submission.origin == "archive":
        _, contents = read_zip(submission.root, [name], limits.for_archive())
        return contents[name]
    path = Path(submission.root) / name
    size = path.stat().st_size
    if size > limits.max_member_bytes:
        raise LimitExceeded("member size", f"{name} is {size / MiB:.0f} MiB")
    return path.read_bytes()
