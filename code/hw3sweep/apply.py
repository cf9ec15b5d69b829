"""``invoke sweep --apply``: write a trial's settings into ``submission.toml``'s ``[hparams]``.

tomlkit edits the parsed document in place and writes it back with its comments and layout (a
plain TOML writer would drop them, and the file's comments are its documentation). The difference
is printed before the file is replaced (atomically; git keeps the old one).

What is written: the trial's model, optimizer and schedule settings (every field but the run's
length, which the budget set, the seed and the precision), each one that differs from the full
profile's default or that the file already sets; so the file keeps listing only what changes.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import tomlkit
from hw3.files import write_atomic
from hw3.hparams import HParams, profile_defaults
from hw3tools.studies import trial_hparams
from optuna.trial import FrozenTrial

from hw3sweep.budgets import LENGTH_FIELDS

NOT_APPLIED = frozenset(LENGTH_FIELDS) | {"seed", "precision"}


def applied_settings(trial: FrozenTrial, present: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The settings of ``trial`` that go into ``[hparams]``: those that differ from the full
    profile's defaults, and those named in ``present`` (already set in the file)."""
    hp, defaults = trial_hparams(trial).to_dict(), profile_defaults("full").to_dict()
    if trial.user_attrs.get("budget") == "full":  # a full-length trial's epochs are its own
        applicable = set(hp) - (NOT_APPLIED - {"epochs"})
    else:
        applicable = set(hp) - NOT_APPLIED
    order = list(HParams().to_dict())
    return {
        k: hp[k]
        for k in order
        if k in applicable and (hp[k] != defaults[k] or k in present) and hp[k] is not None
    }


def toml_lines(settings: dict[str, Any]) -> list[str]:
    """``name = value`` lines, as TOML writes them."""
    return [f"{name} = {tomlkit.item(value).as_string()}" for name, value in settings.items()]


def apply_trial(config: Path, trial: FrozenTrial) -> str:
    """Write ``trial``'s settings into ``config``'s ``[hparams]``; returns the difference printed
    (empty when the file already has them)."""
    text = config.read_text(encoding="utf-8")
    document = tomlkit.parse(text)
    if "hparams" not in document:
        document["hparams"] = tomlkit.table()
    table = document["hparams"]
    settings = applied_settings(trial, frozenset(table.keys()))
    for name, value in settings.items():
        table[name] = value
    new_text = tomlkit.dumps(document)
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            str(config),
            f"{config} (trial {trial.number})",
        )
    )
    if not diff:
        print(f"{config} already has the settings of trial {trial.number}: nothing to change")
        return ""
    print(diff, end="")
    HParams.from_dict({**profile_defaults("full").to_dict(), **tomlkit.parse(new_text)["hparams"].unwrap()})
    write_atomic(config, new_text)
    print(f"wrote trial {trial.number}'s settings into {config}")
    if trial.user_attrs.get("budget") not in (None, "full"):
        print(
            f"note: trial {trial.number} trained on the {trial.user_attrs['budget']!r} budget; "
            "check the full profile with a full run before submitting"
        )
    return diff
