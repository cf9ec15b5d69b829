"""Several workers on one study, on a journal file and on PostgreSQL: exact trial counts, and a worker
killed mid-trial costs nothing but that trial's time (Optuna's heartbeat fails it, it is retried once)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from hw3tools.studies import StudyError
from optuna.trial import TrialState
from sweep_fixtures import TINY, finish, load, start_sweep, storage_url, sweep_command, write_corpus  # noqa: F401

pytestmark = pytest.mark.slow
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def test_three_workers_reach_the_number_of_trials_exactly(tmp_path, storage_url) -> None:  # noqa: F811
    corpus, study = write_corpus(tmp_path / "corpus"), f"three-{uuid.uuid4().hex[:8]}"
    process = start_sweep(tmp_path, sweep_command(corpus, study, storage_url, 10, 3, "--set", *TINY))
    output = finish(process)
    assert process.returncode == 0, output
    trials = load(study, storage_url).get_trials()
    assert len(trials) == 10, [(t.number, t.state) for t in trials]
    assert all(t.state in FINISHED for t in trials), [(t.number, t.state) for t in trials]
    assert sorted(t.number for t in trials) == list(range(10))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work was shared
    for trial in trials:  # every trial's record is complete
        assert trial.user_attrs["hparams"]["max_train_batches"] == 2
        assert {"device", "precision", "torch_version"} <= set(trial.user_attrs["run"])
        assert "commit" in trial.user_attrs["git"] and trial.user_attrs["history"]
    assert trials[0].params["warmup_batches"] == 50  # the baseline (the quick profile) comes first
    # the same command again: the target is reached, nothing more runs
    again = start_sweep(tmp_path, sweep_command(corpus, study, storage_url, 10, 2, "--set", *TINY))
    assert "10 of 10 trials finished" in finish(again) and len(load(study, storage_url).get_trials()) == 10


def test_a_worker_killed_mid_trial_is_failed_and_its_trial_retried(tmp_path, storage_url) -> None:  # noqa: F811
    corpus, study = write_corpus(tmp_path / "corpus"), f"kill-{uuid.uuid4().hex[:8]}"
    settings = ["max_train_batches=2", "max_eval_batches=2", "epochs=12", "log_interval=1", "precision=fp32"]
    command = sweep_command(corpus, study, storage_url, 6, 2, "--pruner", "none", "--set", *settings)
    process = start_sweep(tmp_path, command)
    victim = None
    try:
        deadline = time.time() + 180
        while victim is None and time.time() < deadline and process.poll() is None:
            time.sleep(0.5)
            try:
                running = load(study, storage_url).get_trials(states=(TrialState.RUNNING,))
            except (KeyError, StudyError):  # the study is not created yet
                continue
            for trial in running:
                if len(trial.user_attrs.get("history") or []) >= 2:  # well into its training
                    victim = trial
                    os.kill(int(trial.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
                    break
        assert victim is not None, "no trial was caught running"
    finally:
        output = finish(process)
    assert process.returncode == 0, output
    trials = load(study, storage_url).get_trials()
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state in FINISHED
    assert retries[0].params == killed.params  # the same configuration, run again
    others = [t for t in trials if t.number != victim.number]
    assert len(others) == 6 and all(t.state in FINISHED for t in others)
    for trial in others:  # intact: every epoch recorded, or stopped only because its loss diverged
        assert len(trial.user_attrs.get("history") or []) == 12 or "diverged" in trial.user_attrs, trial
