"""A study's storage for workers: Optuna's heartbeat on both backends, and a lock for the budget.

Where a study lives is :mod:`hw3tools.studies` (one home). Here the workers' view of it:

- **Heartbeat.** Each running trial records a heartbeat every ``interval`` seconds; a trial whose
  heartbeat is older than ``grace`` seconds belonged to a dead worker (SIGKILL, a lost machine) and
  is failed by the next worker that looks (``optuna.storages.fail_stale_trials``), which enqueues
  it again once (``RetryHeartbeatStaleTrialCallback(max_retry=1)``). RDBStorage has this built
  in; Optuna's JournalStorage has no heartbeat, so :class:`HeartbeatJournalStorage` adds Optuna's
  heartbeat interface to it, keeping the heartbeat as a system attribute of the running trial in
  the journal itself (one line per interval). Its clock is the workers' wall clock: workers on
  several machines sharing one journal (NFS) need synchronised clocks.
- **Budget lock.** Counting the study's trials and asking for the next one happen under one lock
  (:func:`budget_lock`: a file lock beside a journal, an advisory lock in PostgreSQL), so K workers
  on any number of machines start exactly the number of trials requested, never one more.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from hw3tools.studies import StudyError, is_url
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # the interface fail_stale_trials reads
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

HEARTBEAT_ATTR = "hw3sweep:heartbeat"  # a running trial's last heartbeat (Unix time), journal only
DEFAULT_HEARTBEAT_S = 20
MAX_RETRY = 1


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Enqueue a dead worker's trial again, once (Optuna's callback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with Optuna's heartbeat interface (see the module docstring)."""

    def __init__(self, backend: BaseJournalBackend, interval: int, grace: int) -> None:
        super().__init__(backend)
        self._interval, self._grace = interval, grace
        self._callback = retry_callback()

    def record_heartbeat(self, trial_id: int) -> None:
        # the trial may finish between two beats (the worker's own tell): nothing to record then
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None and trial.datetime_start is not None:  # died before its first beat
                beat = trial.datetime_start.timestamp()
            if beat is not None and now - beat > self._grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
        return self._callback


def open_sweep_storage(location: str, heartbeat: int = DEFAULT_HEARTBEAT_S) -> BaseStorage:
    """The storage at ``location`` for workers: heartbeat every ``heartbeat`` seconds, a trial
    without one for three intervals is stale. Journals are created if missing."""
    if heartbeat < 1:
        raise StudyError(f"the heartbeat interval must be at least 1 second, not {heartbeat}")
    grace = 3 * heartbeat
    if is_url(location):
        if not location.startswith("postgresql"):
            raise StudyError(
                f"storage {location!r}: workers share a journal file (one machine) or PostgreSQL "
                "(postgresql+psycopg://USER@HOST/DB, several machines)"
            )
        with warnings.catch_warnings():  # the heartbeat arguments are "experimental" since 2.x
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(
                location,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=retry_callback(),
                engine_kwargs={"pool_pre_ping": True},
            )
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat, grace)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the running trials of dead workers and enqueue them again (Optuna's function)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _advisory_key(study: str) -> int:
    """A 64-bit signed key for PostgreSQL's advisory locks, one per study."""
    digest = hashlib.sha256(f"hw3sweep:{study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def budget_lock(location: str, study: str) -> Iterator[None]:
    """Hold the study's budget lock: a file lock beside a journal, or a PostgreSQL session-level
    advisory lock (released by the server if the worker dies)."""
    if not is_url(location):
        from hw3tools.locks import exclusive_lock

        with exclusive_lock(Path(f"{location}.budget-lock"), timeout=600, purpose="study budget"):
            yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(location, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            key = {"key": _advisory_key(study)}
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), key)
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
    finally:
        engine.dispose()
