"""Where a tuning study (an Optuna study) is stored, and the hyper-parameters of one of its trials.

The one home of the storage convention, for ``python -m hw3tools.train --from-study`` and for the tuner
(``hw3sweep``, which imports this module; ``hw3`` never imports ``hw3sweep``):

- ``--storage`` given: a URL (``postgresql+psycopg://user@host/db``: Optuna's RDBStorage, for
  studies shared by several machines) or the path of a journal file (JSON lines).
- not given: the journal ``benchmarks/studies/<study>.journal`` when the repository records that
  study (``history``: every trial measured before the tuner existed), else
  ``build/sweeps/<study>.journal`` (Optuna's JournalStorage with a JournalFileBackend: no server,
  safe for several processes on one machine). Paths are relative to the working folder, the
  repository's root when run through ``invoke``.

Every trial of a study stores its complete hyper-parameters in the user attribute ``hparams``;
Optuna is imported only when a study is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hw3.hparams import HParams

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

SWEEPS_DIR = Path("build") / "sweeps"
RECORDED_DIR = Path("benchmarks") / "studies"
JOURNAL_SUFFIX = ".journal"
HPARAMS_ATTR = "hparams"  # the trial's complete hyper-parameters (HParams.to_dict())
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class StudyError(ValueError):
    """A study, a trial or a storage that cannot be used (the message says why and what to do)."""


def check_study_name(study: str) -> str:
    """``study`` if it can name a journal file (letters, digits, ``_ . -``), else StudyError."""
    if not _STUDY_NAME.fullmatch(study):
        raise StudyError(f"study name {study!r}: use letters, digits, '_', '.' and '-' (it names a file)")
    return study


def is_url(location: str) -> bool:
    """Whether a storage location is a database URL rather than a journal file path."""
    return "://" in location


def journal_path(study: str, folder: Path = SWEEPS_DIR) -> Path:
    """The journal file of ``study`` in ``folder``."""
    return folder / f"{check_study_name(study)}{JOURNAL_SUFFIX}"


def study_location(study: str, storage: str | None = None) -> str:
    """The storage of ``study``: ``storage`` when given, else its journal (the one recorded in
    the repository when there is one, else the one under ``build/sweeps``)."""
    if storage:
        return storage
    recorded = journal_path(study, RECORDED_DIR)
    return str(recorded if recorded.is_file() else journal_path(study))


def open_storage(location: str, *, create: bool = False) -> BaseStorage:
    """Optuna's storage at ``location``: RDBStorage for a URL, JournalStorage for a file path
    (created with its folder when ``create``; StudyError if it is missing otherwise)."""
    import optuna

    if is_url(location):
        return optuna.storages.RDBStorage(location)
    path = Path(location)
    if not create and not path.is_file():
        raise StudyError(f"no study journal at {path} (pass --storage PATH_OR_URL)")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def load_trial(study: str, number: int, storage: str | None = None) -> FrozenTrial:
    """Trial ``number`` of ``study`` (StudyError naming what is missing)."""
    import optuna

    location = study_location(study, storage)
    try:
        loaded = optuna.load_study(study_name=study, storage=open_storage(location))
    except KeyError:
        raise StudyError(f"no study {study!r} in {location}") from None
    trials = loaded.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StudyError(f"study {study!r} ({location}) has trials 0-{len(trials) - 1}, not {number}")
    return trials[number]


def trial_hparams(trial: FrozenTrial) -> HParams:
    """The complete hyper-parameters a trial recorded (validated again)."""
    recorded: dict[str, Any] | None = trial.user_attrs.get(HPARAMS_ATTR)
    if not isinstance(recorded, dict):
        raise StudyError(f"trial {trial.number} has no recorded hyper-parameters ('{HPARAMS_ATTR}')")
    return HParams.from_dict(recorded)
