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
# The longest word of a name the cover's name column holds without breaking it (words wrap at spaces).
NAME_WORD_MAX_CHARS = 18
# RFC 5321 limits the part before the @ to 64 characters; the cover breaks an address only after . or @.
EMAIL_LOCAL_MAX_CHARS = 64
# NumPy's legacy seeding (np.random.seed, hw3.train) takes 0 <= seed < 2**32; HParams allows up to 2**63-1.
SEED_LIMIT = 2**32
# A name must print something: at least one letter (Unicode category L*), e.g. not only a filler.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers, category Lo but blank
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
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (copy submission.toml from the repository)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Notepad writes one) is not part of the TOML
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02X} on line {line}; an editor saved it in "
            "another encoding, e.g. Windows-1255): save it as UTF-8 and build again"
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
    if hparams.seed >= SEED_LIMIT:
        raise ConfigError(
            f"{where}: [hparams] seed={hparams.seed} must be below 2**32 = {SEED_LIMIT} "
            "(NumPy's seeding, which the notebook calls, accepts no larger seed)"
        )

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
    try:
        folder = Path(value).expanduser()
    except RuntimeError:  # "~user/..." for a user this machine does not have
        raise ConfigError(
            f"{where}: data_dir={value!r}: {value.split('/', 1)[0]} is not a user of this machine; "
            "write the folder's full path"
        ) from None
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
            shown = email if not isinstance(email, str) or len(email) <= 100 else email[:60] + "..."
            raise ConfigError(
                f"{where}: {key}.email={shown!r} is not a campus address (expected <user>@campus.technion.ac.il)"
            )
        local = email.strip().split("@", 1)[0]
        if len(local) > EMAIL_LOCAL_MAX_CHARS:
            raise ConfigError(
                f"{where}: {key}.email has {len(local)} characters before the @; an address has at most "
                f"{EMAIL_LOCAL_MAX_CHARS} (RFC 5321): a typo?"
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
    if not any(unicodedata.category(c).startswith("L") and c not in INVISIBLE_LETTERS for c in name):
        raise ConfigError(
            f"{where} = {name!r} has no visible letter, so the cover would print a blank: write the name"
        )
    longest = max(name.split(), key=len)
    if len(longest) > NAME_WORD_MAX_CHARS:
        raise ConfigError(
            f"{where} holds a word of {len(longest)} characters ({longest[:20]}...); at most "
            f"{NAME_WORD_MAX_CHARS} (the cover breaks a name only at its spaces)"
        )
    return name
