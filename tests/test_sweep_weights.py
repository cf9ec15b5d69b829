"""A worker keeps the weights the report will test, whatever order the workers finish in."""

from __future__ import annotations

import optuna
import torch
from hw3sweep.worker import keep_if_best, weights_path


def study_with_two_running_trials() -> optuna.Study:
    study = optuna.create_study(study_name="w")  # in memory: the two workers' shared view
    for dropout in (0.0, 0.1):
        trial = study.ask()
        trial.set_user_attr("hparams", {"dropout": dropout, "seed": 211})
    return study


def test_a_worse_trial_finishing_first_leaves_a_running_trials_saved_weights(tmp_path, monkeypatch) -> None:
    """Two workers: trial 0 (the best) has saved its weights and not yet told its value when trial 1
    (worse) finishes. Trial 1 cannot judge trial 0 and must not delete its weights (CI lost the
    chosen trial's test evaluation this way)."""
    monkeypatch.chdir(tmp_path)
    study, model = study_with_two_running_trials(), torch.nn.Linear(2, 2)
    keep_if_best(study, 0, [120.0], model, "w")  # trial 0's worker, before study.tell
    keep_if_best(study, 1, [130.0], model, "w")  # trial 1's worker: trial 0 still RUNNING
    assert weights_path("w", 0).is_file()
    study.tell(1, 130.0)
    study.tell(0, 120.0)
    assert weights_path("w", 1).is_file()  # kept for now: only a later finish can judge it


def test_a_finished_trial_that_is_beaten_loses_its_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study, model = study_with_two_running_trials(), torch.nn.Linear(2, 2)
    keep_if_best(study, 1, [130.0], model, "w")
    study.tell(1, 130.0)
    keep_if_best(study, 0, [120.0], model, "w")
    assert weights_path("w", 0).is_file() and not weights_path("w", 1).exists()
    # and a later, worse trial neither saves nor removes anything
    trial = study.ask()
    trial.set_user_attr("hparams", {"dropout": 0.2, "seed": 211})
    study.tell(0, 120.0)
    keep_if_best(study, 2, [140.0], model, "w")
    assert sorted(p.name for p in weights_path("w", 0).parent.iterdir()) == ["trial-0.pt"]
