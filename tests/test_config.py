"""submission.toml: validation before any work, placeholders flagged, the Israeli ID check digit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from hw3.hparams import profile_defaults
from hw3build.submission.config import (
    EMAIL_LOCAL_MAX_CHARS,
    NAME_MAX_CHARS,
    NAME_WORD_MAX_CHARS,
    ConfigError,
    israeli_id_valid,
    load_config,
    parse_config,
)
from submission_fixtures import ID1, ID2

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "submission.toml"


VALID_STUDENTS = (
    ("Alice Levi", "alice@campus.technion.ac.il", f'"{ID1}"'),
    ("Bob Cohen", "bob.c@campus.technion.ac.il", f'"{ID2}"'),
)


def write_config(
    folder: Path,
    *,
    top: str = "",
    students: tuple[tuple[str, str, str], ...] = VALID_STUDENTS,
    hparams: str = "",
) -> Path:
    """A config file; student IDs are TOML literals (quote them for strings)."""
    blocks = [top]
    for name, email, id_literal in students:
        blocks.append(f'[[students]]\nname = "{name}"\nemail = "{email}"\nid = {id_literal}\n')
    blocks.append(f"[hparams]\n{hparams}\n")
    path = folder / "submission.toml"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


@pytest.mark.parametrize("id_number", ["000000018", "123456782", "012345674", "039337423"])
def test_valid_check_digits(id_number: str) -> None:
    assert israeli_id_valid(id_number)


@pytest.mark.parametrize(
    "id_number", ["000000019", "123456781", "123456789", "987654321", "12345678", "12345678a"]
)
def test_invalid_check_digits_and_formats(id_number: str) -> None:
    assert not israeli_id_valid(id_number)


def test_a_valid_config_loads_with_profile_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.profile == "full"
    assert config.hparams == profile_defaults("full")
    assert config.ids == (ID1, ID2)
    assert config.submission_name == f"ece046211_hw3_{ID1}_{ID2}"
    assert config.device == "auto" and config.data_dir is None
    assert not config.warnings and not config.has_placeholders


def test_overrides_apply_on_top_of_the_chosen_profile(tmp_path: Path) -> None:
    path = write_config(tmp_path, top='profile = "full"\n', hparams="lr = 0.02\ndropout = 0.2")
    quick = load_config(path, profile="quick")
    assert quick.profile == "quick"
    assert quick.hparams == profile_defaults("quick").replace(lr=0.02, dropout=0.2)
    assert quick.hparams_overrides == {"lr": 0.02, "dropout": 0.2}
    assert load_config(path).hparams == profile_defaults("full").replace(lr=0.02, dropout=0.2)


def test_parameters_for_the_notebook(tmp_path: Path) -> None:
    path = write_config(tmp_path, top='device = "cpu"\ndata_dir = "data/wt2"\n', hparams="epochs = 3")
    config = load_config(path)
    params = config.run_parameters()
    assert params["profile"] == "full" and params["device"] == "cpu" and params["epochs"] == 3
    assert config.data_dir == tmp_path.resolve() / "data" / "wt2"  # relative to the config file
    assert (
        params["data_dir"] is None
    )  # the folder reaches the kernel as $HW3_DATA_DIR: no path in the notebook
    assert "out_dir" not in params
    assert set(params) == {"profile", "device", "data_dir", *profile_defaults("full").to_dict()}


@pytest.mark.parametrize(
    ("hparams", "key", "allowed"),
    [
        ("emsize = 300", "emsize", "[200, 250]"),
        ("lr = 10.0", "lr", "[0.005, 5]"),
        ("dropout = 0.5", "dropout", "[0, 0.3]"),
    ],
)
def test_out_of_range_hparams_are_refused_with_the_range(
    tmp_path: Path, hparams: str, key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, hparams=hparams))
    message = str(raised.value)
    assert key in message and allowed in message and "[hparams]" in message


def test_wrong_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nlayers"):
        load_config(write_config(tmp_path, hparams='nlayers = "four"'))


@pytest.mark.parametrize(
    ("top", "hparams", "unknown"),
    [('colour = "red"\n', "", "colour"), ("", "learning_rate = 0.1", "learning_rate")],
)
def test_unknown_keys_are_refused(tmp_path: Path, top: str, hparams: str, unknown: str) -> None:
    with pytest.raises(ConfigError, match=unknown):
        load_config(write_config(tmp_path, top=top, hparams=hparams))


def test_unknown_student_keys_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('name = "Alice Levi"', 'name = "Alice Levi"\nphone = "050"'))
    with pytest.raises(ConfigError, match="phone"):
        load_config(path)


@pytest.mark.parametrize(
    ("student", "match"),
    [
        (("Alice Levi", "alice@campus.technion.ac.il", '"123456781"'), "check digit"),
        (("Alice Levi", "alice@campus.technion.ac.il", '"12345678"'), "9 digits"),
        (("Alice Levi", "alice@campus.technion.ac.il", "123456782"), "quoted string"),
        (("Alice Levi", "alice@gmail.com", f'"{ID1}"'), "campus"),
        (("Alice Levi", "alice@technion.ac.il", f'"{ID1}"'), "campus"),
        (("", "alice@campus.technion.ac.il", f'"{ID1}"'), "name"),
    ],
)
def test_bad_student_data_is_refused(tmp_path: Path, student: tuple[str, str, str], match: str) -> None:
    students = (student, VALID_STUDENTS[1])
    with pytest.raises(ConfigError, match=match):
        load_config(write_config(tmp_path, students=students))


def test_exactly_two_different_students(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly two"):
        load_config(write_config(tmp_path, students=VALID_STUDENTS[:1]))
    with pytest.raises(ConfigError, match="same id"):
        load_config(write_config(tmp_path, students=(VALID_STUDENTS[0], VALID_STUDENTS[0])))


@pytest.mark.parametrize(
    ("top", "match"), [('profile = "medium"\n', "profile"), ('device = "tpu"\n', "device")]
)
def test_bad_profile_or_device_is_refused(tmp_path: Path, top: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write_config(tmp_path, top=top))


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("profile = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_placeholders_are_accepted_but_flagged(tmp_path: Path) -> None:
    students = (
        ("Student 1", "student_1@campus.technion.ac.il", '"123456789"'),
        ("Alice Levi", "alice@campus.technion.ac.il", f'"{ID1}"'),
    )
    config = load_config(write_config(tmp_path, students=students))
    assert config.has_placeholders
    assert config.students[0].placeholder_fields == ("name", "email", "id")
    assert not config.students[1].is_placeholder
    assert (
        len(config.warnings) == 1
        and "student 1" in config.warnings[0]
        and "placeholder" in config.warnings[0]
    )
    assert config.to_dict()["placeholders"] is True


def test_the_shipped_config_builds_with_placeholders_flagged() -> None:
    config = load_config(SHIPPED)
    assert config.profile == "full"
    assert config.ids == ("123456789", "987654321")
    assert len(config.warnings) == 2
    assert config.hparams == profile_defaults("full")


def test_the_shipped_config_lists_the_tuned_defaults() -> None:
    """The commented [hparams] lines show users the real defaults: they must match profile_defaults("full")."""
    text = SHIPPED.read_text(encoding="utf-8")
    section = text[text.index("[hparams]") :]
    listed = tomllib.loads(
        "\n".join(m.group(1) for m in re.finditer(r"^# (\w+ = .+?)(?:[ \t]+#.*)?$", section, re.M))
    )
    defaults = profile_defaults("full").to_dict()
    assert set(listed) == set(defaults), "every hyper-parameter is listed once"
    quick = profile_defaults("quick").to_dict()
    for key, value in listed.items():
        # max_*_batches are None for "full" (TOML has no null): the file shows the "quick" value instead.
        expected = quick[key] if defaults[key] is None else defaults[key]
        assert value == expected, (
            f"submission.toml shows `# {key} = {value}` but the default is {expected!r}: update the comment"
        )


# ------------------------------------------------------------------------------------ names as typed
def _students(name: str) -> list[dict[str, str]]:
    return [
        {"name": name, "email": "alice@campus.technion.ac.il", "id": ID1},
        {"name": "Bob Cohen", "email": "bob.c@campus.technion.ac.il", "id": ID2},
    ]


@pytest.mark.parametrize(
    "name",
    ["יוסי כהן", "נועה לוי-אברהם", "محمد علي", "Анна", "Łukasz Żółć", "O'Neil", "50% Bob", "[Bob]",
     "$x$ & _ { } ~ ^ \\ * -- # <i>"],
)  # fmt: skip
def test_real_and_hostile_names_are_kept_as_typed(name: str) -> None:
    assert parse_config({"students": _students(name)}).students[0].name == name


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ('Alice\n%% code\nimport os; os.system("rm -rf ~")', "control character, U+000A"),
        ("Alice\r\nBob", "control character, U+000D"),
        ("Alice\tLevi", "control character, U+0009"),
        ("Alice\x00", "control character, U+0000"),
        ("Alice\u2028Levi", "line separator, U+2028"),
        ("abc\u202edcba", "bidi control character (it reorders the text around it), U+202E"),
        ("\u202aAlice", "bidi control character"),
        ("Alice\u2066Levi\u2069", "U+2066"),
        ("Alice\u200fLevi", "U+200F"),
        ("Alice\ue000", "private-use character"),
        ("Alice\u0378", "unassigned code point"),
    ],
)
def test_names_with_control_or_bidi_characters_are_refused_naming_the_field(name: str, what: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"students": _students(name)})
    message = str(refused.value)
    assert "students[1].name" in message and what in message


def test_names_from_the_toml_file_are_checked_too(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('name = "Alice Levi"', 'name = "Alice\\nimport os"'))
    with pytest.raises(ConfigError, match=r"submission\.toml: students\[1\]\.name holds a control character"):
        load_config(path)


def test_overlong_names_are_refused_and_decomposed_accents_composed() -> None:
    with pytest.raises(ConfigError, match=f"students\\[1\\].name has {NAME_MAX_CHARS + 1} characters"):
        parse_config({"students": _students(_long_name(NAME_MAX_CHARS + 1))})
    assert parse_config({"students": _students(_long_name(NAME_MAX_CHARS))})
    decomposed = "Z\u0307o\u0301\u0142c\u0301"  # "Żółć" typed with combining accents
    assert parse_config({"students": _students(decomposed)}).students[0].name == "Żółć"


@pytest.mark.parametrize(
    "email",
    ["alice@campus.technion.ac.il\nx", "al ice@campus.technion.ac.il", "alice@campus.technion.ac.il.evil"],
)
def test_emails_keep_their_strict_check(email: str) -> None:
    students = _students("Alice")
    students[0]["email"] = email
    with pytest.raises(ConfigError, match="campus"):
        parse_config({"students": students})


def _long_name(length: int) -> str:
    """A name of ``length`` characters made of words the cover can wrap between."""
    return ("Abcdefgh " * length)[:length].strip().ljust(length, "x")


def test_a_seed_numpy_cannot_take_is_refused_before_the_kernel_starts() -> None:
    students = _students("Alice")
    with pytest.raises(ConfigError, match=r"seed=4294967296 must be below 2\*\*32"):
        parse_config({"students": students, "hparams": {"seed": 2**32}})
    assert parse_config({"students": students, "hparams": {"seed": 2**32 - 1}}).hparams.seed == 2**32 - 1


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(path).students[0].name == "Alice Levi"


def test_a_file_saved_in_another_encoding_says_save_it_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "submission.toml"
    text = write_config(tmp_path).read_text(encoding="utf-8").replace("Alice Levi", "שרה כהן")
    path.write_bytes(text.encode("cp1255"))
    with pytest.raises(ConfigError, match="save it as UTF-8") as caught:
        load_config(path)
    assert "\n" not in str(caught.value)


def test_a_data_dir_of_an_unknown_user_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="~nosuchuser is not a user of this machine"):
        load_config(write_config(tmp_path, top='data_dir = "~nosuchuser/x"'))


@pytest.mark.parametrize("name", ["\u3164", "\u200b\u200c\u200d", "\u3164 \u115f", "- . -"])
def test_a_name_that_prints_nothing_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="no visible letter"):
        parse_config({"students": _students(name)})


def test_a_name_word_longer_than_the_cover_column_is_refused() -> None:
    with pytest.raises(ConfigError, match=f"a word of {NAME_WORD_MAX_CHARS + 1} characters"):
        parse_config({"students": _students("W" * (NAME_WORD_MAX_CHARS + 1))})
    assert parse_config({"students": _students("W" * NAME_WORD_MAX_CHARS)})


def test_emails_with_plus_are_kept_and_overlong_ones_refused() -> None:
    students = _students("Alice")
    students[0]["email"] = "alice+hw3@campus.technion.ac.il"
    assert parse_config({"students": students}).students[0].email == "alice+hw3@campus.technion.ac.il"
    students[0]["email"] = "a" * EMAIL_LOCAL_MAX_CHARS + "@campus.technion.ac.il"
    assert parse_config({"students": students})
    students[0]["email"] = "a" * 5000 + "@campus.technion.ac.il"
    with pytest.raises(ConfigError, match="5000 characters before the @") as caught:
        parse_config({"students": students})
    assert len(str(caught.value)) < 300
