"""One trial's endings in a worker: a diverged configuration is pruned, an interruption fails the trial
and enqueues it again once, and every trial records its complete settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import pytest
from hw3.metrics import perplexity
from hw3sweep import worker
from hw3sweep.budgets import get_budget
from hw3sweep.cli import trial_params
from optuna.trial import TrialState
from sweep_fixtures import TINY, write_corpus


@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> worker.Trainer:
    return worker.Trainer(write_corpus(tmp_path_factory.mktemp("corpus")), "cpu", 1)


def args() -> argparse.Namespace:
    fixed = dict(item.split("=") for item in TINY)
    fixed = {k: (v if k == "precision" else int(v)) for k, v in fixed.items()}
    return argparse.Namespace(budget="quick", fixed=json.dumps(fixed), time_aware=False)


def new_study(folder: Path) -> optuna.Study:
    from hw3sweep.storage import HeartbeatJournalStorage
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(folder / "t.journal"))
    study = optuna.create_study(study_name="t", storage=HeartbeatJournalStorage(backend, 1, 3))
    # the budget's own settings, not a random sample: some samples (lr 0.2 on the tiny model) diverge,
    # and a diverged trial is pruned before the path a test follows (seen once in CI)
    fixed = json.loads(args().fixed)
    study.enqueue_trial(trial_params(get_budget("quick"), fixed, {}, time_aware=False))
    return study


def test_a_trial_completes_with_its_complete_record(trainer, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = new_study(tmp_path)
    worker.run_one(study, trainer, args())
    trial = study.get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.value == min(
        r["val_ppl"] for r in trial.user_attrs["history"]
    )
    assert trial.user_attrs["hparams"]["epochs"] == 2 and trial.user_attrs["budget"] == "quick"
    assert (tmp_path / "build" / "sweeps" / "t" / "weights" / "trial-0.pt").is_file()  # the best so far


def one_trial_with(trainer, tmp_path, monkeypatch, fit) -> optuna.trial.FrozenTrial:
    """The one trial of a new study whose worker trains with ``fit``."""
    monkeypatch.setattr(worker, "fit", fit)
    study = new_study(tmp_path)
    worker.run_one(study, trainer, args())
    return study.get_trials()[0]


def test_a_diverged_configuration_is_pruned_not_a_crash(trainer, tmp_path, monkeypatch) -> None:
    def diverge(*args, **kwargs):
        raise worker.TrainingDiverged("loss became nan")

    trial = one_trial_with(trainer, tmp_path, monkeypatch, diverge)
    assert trial.state == TrialState.PRUNED and "TrainingDiverged" in trial.user_attrs["diverged"]


def test_a_validation_loss_past_exps_range_is_pruned_not_a_crash(trainer, tmp_path, monkeypatch) -> None:
    """fit records such an epoch's perplexity as infinite; the worker's own exp() of the best loss
    raised OverflowError, which crashed the worker and left its study short of trials (seen in
    benchmarks/bench_sweep.py)."""
    real_fit = worker.fit

    def past_range(*args, on_epoch_end, **kwargs):
        def epoch_end(result):
            result.history[-1].update(val_loss=800.0, val_ppl=perplexity(800.0))
            result.best_val_loss = 800.0
            on_epoch_end(result)

        result = real_fit(*args, on_epoch_end=epoch_end, **kwargs)
        result.best_val_loss = 800.0
        return result

    trial = one_trial_with(trainer, tmp_path, monkeypatch, past_range)
    assert trial.state == TrialState.PRUNED and "validation loss 800" in trial.user_attrs["diverged"]


def test_an_interrupted_trial_fails_and_is_enqueued_again_once(trainer, tmp_path, monkeypatch) -> None:
    real_fit = worker.fit

    def interrupted(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        result.interrupted = True  # what fit returns after Ctrl-C / SIGTERM
        return result

    monkeypatch.setattr(worker, "fit", interrupted)
    study = new_study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        worker.run_one(study, trainer, args())
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"]
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    with pytest.raises(KeyboardInterrupt):  # interrupted again: failed, not retried a second time
        worker.run_one(study, trainer, args())
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]
