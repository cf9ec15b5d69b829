"""The one file a user edits (``submission.toml``): the two students, the profile and the hyper-parameters.

Everything is validated before any work starts: a typo, an out-of-range hyper-parameter, a malformed ID or
a non-campus e-mail stops the build with a message that names the key. The assignment's placeholder
students (``Student 1``/``Student 2``, ``123456789``/``987654321``) are *accepted* so a fresh clone builds,
but flagged loudly: :attr:`SubmissionConfig.warnings` says so, the build prints it and records it, and
``invoke validate --strict`` refuses a zip made from them.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw3.hparams import PROFILES, HParams, profile_defaults

from hw3build.errors import BuildError
from hw3build.notebook.schema import DEVICES
from hw3build.submission.assignment import submission_stem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_LEVEL_KEYS = ("profile", "device", "data_dir", "students", "hparams")
STUDENT_KEYS = ("name", "email", "id")
CAMPUS_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@campus\.technion\.ac\.il")
NAME_MAX_CHARS = 80
# Characters a name never needs and that can do harm: line and paragraph breaks (a newline in a name once
# added a code cell to the notebook), the bidi controls that reorder what follows them on screen (Trojan
# Source), and code points that print nothing. Names are NFC-normalised first, so a decomposed accent
# (as macOS may type it) prints as one glyph.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
    "Co": "a private-use character (no font has it)",
    "Cn": "an unassigned code point",
}

# The assignment's "Students Information" table, which a fresh clone ships with.
PLACEHOLDER_NAMES = frozenset({"Student 1", "Student 2"})
PLACEHOLDER_IDS = frozenset({"123456789", "987654321"})
PLACEHOLDER_EMAILS = frozenset({"student_1@campus.technion.ac.il", "student_2@campus.technion.ac.il"})


class ConfigError(BuildError, ValueError):
    """The submission config is invalid; the message names the file and the key."""


def israeli_id_valid(id_number: str) -> bool:
    """The Israeli ID check digit: 9 digits weighted 1,2,1,2,...; products above 9 have their digits
    summed; the total must be divisible by 10."""
    if not (
        isinstance(id_number, str) and len(id_number) == 9 and id_number.isascii() and id_number.isdigit()
    ):
        return False
    total = 0
    for position, char in enumerate(id_number):
        product = int(char) * (1 if position % 2 == 0 else 2)
        total += product - 9 if product > 9 else product  # digit sum of a two-digit product
    return total % 10 == 0


@dataclass(frozen=True)
class Student:
    name: str
    email: str
    id: str

    @property
    def placeholder_fields(self) -> tuple[str, ...]:
        """Which fields still hold the assignment's placeholder values."""
        found = []
        if self.name in PLACEHOLDER_NAMES:
            found.append("name")
        if self.email.lower() in PLACEHOLDER_EMAILS:
            found.append("email")
        if self.id in PLACEHOLDER_IDS:
            found.append("id")
        return tuple(found)

    @property
    def is_placeholder(self) -> bool:
        return bool(self.placeholder_fields)


@dataclass(frozen=True)
class SubmissionConfig:
    """A validated ``submission.toml``."""

    students: tuple[Student, Student]
    profile: str
    hparams: HParams
    hparams_overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None
    device: str = "auto"
    path: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ids(self) -> tuple[str, str]:
        return self.students[0].id, self.students[1].id

    @property
    def has_placeholders(self) -> bool:
        return any(student.is_placeholder for student in self.students)

    @property
    def submission_name(self) -> str:
        """``ece046211_hw3_<id1>_<id2>``: the stem of the zip and of both files inside it."""
        return submission_stem(*self.ids)

    def run_parameters(self) -> dict[str, Any]:
        """The notebook parameters the config decides. ``data_dir`` is always None here: the build gives
        the kernel the data folder as ``$HW3_DATA_DIR``, so no local path is written into the notebook;
        ``out_dir`` is chosen by the execution stage (the run folder)."""
        return {"profile": self.profile, "data_dir": None, "device": self.device, **self.hparams.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (for build/build.json)."""
        return {
            "path": None if self.path is None else str(self.path),
            "profile": self.profile,
            "device": self.device,
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "students": [{"name": s.name, "email": s.email, "id": s.id} for s in self.students],
            "placeholders": self.has_placeholders,
            "hparams_overrides": dict(self.hparams_overrides),
            "hparams": self.hparams.to_dict(),
            "warnings": list(self.warnings),
        }


def load_config(path: str | Path, profile: str | None = None) -> SubmissionConfig:
    """Read and validate ``path``; ``profile`` (e.g. from ``--profile``) overrides the file's profile.

    Raises :class:`ConfigError` on anything invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (copy submission.toml from the repository)"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, path=path, profile=profile)


def parse_config(
    raw: dict[str, Any], path: Path | None = None, profile: str | None = None
) -> SubmissionConfig:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    where = str(path) if path is not None else "config"
    _refuse_unknown(raw, TOP_LEVEL_KEYS, where, "top-level key")

    chosen_profile = profile if profile is not None else raw.get("profile", "full")
    if chosen_profile not in PROFILES:
        raise ConfigError(
            f"{where}: profile={chosen_profile!r} is not allowed; choose one of {list(PROFILES)}"
        )

    device = raw.get("device", "auto")
    if device not in DEVICES:
        raise ConfigError(f"{where}: device={device!r} is not allowed; choose one of {list(DEVICES)}")

    data_dir = _parse_data_dir(raw.get("data_dir"), path, where)
    students = _parse_students(raw.get("students"), where)

    overrides = raw.get("hparams", {})
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: [hparams] must be a table of name = value lines")
    try:
        base = profile_defaults(chosen_profile)
        hparams = HParams.from_dict({**base.to_dict(), **overrides})
    except ValueError as exc:  # HParams names the field and its allowed range
        raise ConfigError(f"{where}: [hparams] {exc}") from None

    warnings = []
    config_name = path.name if path is not None else "submission.toml"  # no local path in the report
    for number, student in enumerate(students, start=1):
        if student.is_placeholder:
            fields = ", ".join(student.placeholder_fields)
            warnings.append(
                f"student {number} still holds the assignment's placeholder {fields} "
                f"({student.name}, {student.email}, {student.id}): edit {config_name} before submitting"
            )
    return SubmissionConfig(
        students=students,
        profile=chosen_profile,
        hparams=hparams,
        hparams_overrides=dict(overrides),
        data_dir=data_dir,
        device=device,
        path=path,
        warnings=tuple(warnings),
    )


def _refuse_unknown(table: dict[str, Any], known: tuple[str, ...], where: str, what: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {unknown}; known: {list(known)}")


def _parse_data_dir(value: Any, path: Path | None, where: str) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: data_dir must be a string (a folder path), got {value!r}")
    folder = Path(value).expanduser()
    if not folder.is_absolute() and path is not None:
        folder = path.resolve().parent / folder  # relative to the config file, not to the current directory
    return folder


def _parse_students(value: Any, where: str) -> tuple[Student, Student]:
    if not isinstance(value, list) or len(value) != 2:
        count = len(value) if isinstance(value, list) else 0
        raise ConfigError(
            f"{where}: exactly two [[students]] entries are required (submission only in pairs), found {count}"
        )
    students = []
    for number, entry in enumerate(value, start=1):
        key = f"students[{number}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {key} must be a table with name, email and id")
        _refuse_unknown(entry, STUDENT_KEYS, where, f"key in {key}")
        missing = [k for k in STUDENT_KEYS if k not in entry]
        if missing:
            raise ConfigError(f"{where}: {key} is missing {missing}")
        name, email, id_number = entry["name"], entry["email"], entry["id"]
        name = check_name(name, f"{where}: {key}.name")
        if not isinstance(email, str) or not CAMPUS_EMAIL.fullmatch(email.strip()):
            raise ConfigError(
                f"{where}: {key}.email={email!r} is not a campus address (expected <user>@campus.technion.ac.il)"
            )
        if not isinstance(id_number, str):
            raise ConfigError(
                f'{where}: {key}.id must be a quoted string of 9 digits (e.g. id = "012345674"), '
                f"so leading zeros are kept; got {id_number!r}"
            )
        id_number = id_number.strip()
        if not (len(id_number) == 9 and id_number.isascii() and id_number.isdigit()):
            raise ConfigError(
                f"{where}: {key}.id={id_number!r} must be exactly 9 digits (pad with leading zeros)"
            )
        # The placeholders fail the check digit; they are flagged (warning), not refused, so a clone builds.
        if id_number not in PLACEHOLDER_IDS and not israeli_id_valid(id_number):
            raise ConfigError(f"{where}: {key}.id={id_number!r} fails the Israeli ID check digit: a typo?")
        students.append(Student(name=name, email=email.strip(), id=id_number))
    if students[0].id == students[1].id:
        raise ConfigError(f"{where}: the two students have the same id {students[0].id!r}")
    return students[0], students[1]


def check_name(value: Any, where: str) -> str:
    """A student's name, NFC-normalised and stripped; :class:`ConfigError` (naming ``where``) for a value
    that is not a name: empty, over ``NAME_MAX_CHARS``, or holding a refused character."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string")
    name = unicodedata.normalize("NFC", value).strip()
    for position, char in enumerate(name, start=1):
        category = unicodedata.category(char)
        if char in BIDI_CONTROLS:
            what = "a bidi control character (it reorders the text around it)"
        elif category in REFUSED_CATEGORIES:
            what = REFUSED_CATEGORIES[category]
        else:
            continue
        label = unicodedata.name(char, "")
        raise ConfigError(
            f"{where} holds {what}, U+{ord(char):04X}{f' {label}' if label else ''}, at character "
            f"{position}: write the name on one line, as it should print"
        )
    if len(name) > NAME_MAX_CHARS:
        raise ConfigError(
            f"{where} has {len(name)} characters; at most {NAME_MAX_CHARS} (it prints on the cover)"
        )
    return name
