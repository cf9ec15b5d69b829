"""The time-aware study: two objectives (validation perplexity, training batches), the run's length
searched, hand-picked configurations enqueued, the Pareto front's weights kept, and its report."""

from __future__ import annotations

import uuid

import pytest
from hw3sweep.cli import main as sweep_main
from hw3sweep.objective import dominates, pareto_front, trained_batches, validation_ppl
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial
from sweep_fixtures import TINY, load, start_sweep, sweep_command, write_corpus

pytestmark = pytest.mark.slow


def finish(process, timeout: float = 240) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        process.kill()
        raise
    return output


def test_a_time_aware_study_searches_the_length_and_keeps_the_front(tmp_path) -> None:
    corpus, study = write_corpus(tmp_path / "corpus"), f"time-{uuid.uuid4().hex[:8]}"
    storage = str(tmp_path / "build" / "sweeps" / f"{study}.journal")
    tiny = [item for item in TINY if not item.startswith("epochs=")]  # the length is searched
    command = sweep_command(corpus, study, storage, 5, 1, "--time-aware", "--set", *tiny)
    picked = ["--enqueue", "epochs=1", "dropout=0.05", "--enqueue", "epochs=1", "cooldown=0.5"]
    output = finish(process := start_sweep(tmp_path, [*command, *picked]))
    assert process.returncode == 0, output
    assert "enqueued: epochs=1 dropout=0.05" in output and "enqueued: epochs=1 cooldown=0.5" in output
    assert "pruner none" in output
    loaded = load(study, storage)
    assert loaded.directions == [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    trials = loaded.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    # the baseline (the quick profile's 2 epochs) first, then the enqueued configuration as given
    assert trials[0].params["epochs"] == 2 and trials[0].params["warmup_batches"] == 50
    assert trials[1].params["epochs"] == 1 and trials[1].params["dropout"] == 0.05
    assert trials[1].params["warmup_batches"] == 50  # the rest is the budget's, not sampled
    assert trials[2].params["epochs"] == 1 and trials[2].params["cooldown"] == 0.5
    for trial in trials:  # the second value is the batches the run trained: epochs x 2 batches
        assert trained_batches(trial) == 2 * trial.params["epochs"] == 2 * len(trial.user_attrs["history"])
        assert validation_ppl(trial) == pytest.approx(min(r["val_ppl"] for r in trial.user_attrs["history"]))
        assert not trial.intermediate_values  # nothing reported: Optuna prunes one objective only
    # the weights kept on this machine are exactly the Pareto front's
    weights = tmp_path / "build" / "sweeps" / study / "weights"
    kept = sorted(int(p.stem.removeprefix("trial-")) for p in weights.glob("trial-*.pt"))
    assert kept == sorted(t.number for t in pareto_front(trials))
    # enqueuing the same configuration again adds nothing
    again = start_sweep(tmp_path, [*command, "--enqueue", "epochs=1", "dropout=0.05"])
    assert "already in the study: epochs=1 dropout=0.05" in finish(again)
    assert len(load(study, storage).get_trials()) == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--time-aware", "--pruner", "median"], "Optuna cannot prune a two-objective trial"),
        (["--target", "120"], "--target is the time-aware study's goal"),
        (["--time-aware", "--set", "dropout=0.1", "--enqueue", "dropout=0.2"], "fixed for the whole study"),
        (["--time-aware", "--enqueue", "dropout=0.9"], "dropout"),
    ],
)
def test_time_aware_options_that_cannot_work_are_refused_before_training(
    tmp_path, capsys, extra, message
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    storage = str(tmp_path / "s.journal")
    argv = ["--study", "refused", "--storage", storage, "--budget", "quick", "--corpus", str(corpus), *extra]
    assert sweep_main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_study_keeps_its_target(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(tmp_path / "corpus")
    storage = str(tmp_path / "s.journal")
    base = [
        "--study",
        "goal",
        "--storage",
        storage,
        "--budget",
        "quick",
        "--corpus",
        str(corpus),
        "--time-aware",
    ]
    assert sweep_main([*base, "--target", "120", "--trials", "1", "--no-report", "--set", *TINY]) == 0
    assert sweep_main([*base, "--target", "110", "--set", *TINY]) == 2
    assert "a study keeps the goal it started with" in capsys.readouterr().err


def test_the_pareto_front_is_what_no_other_trial_beats_on_both() -> None:
    def trial(number: int, ppl: float, batches: int):
        made = create_trial(values=[ppl, batches])
        made.number = number
        return made

    trials = [trial(0, 128.2, 11712), trial(1, 131.0, 8784), trial(2, 129.0, 11712), trial(3, 140.0, 5856),
              trial(4, 141.0, 8784), trial(5, 128.2, 8784)]  # fmt: skip
    assert [t.number for t in pareto_front(trials)] == [3, 5]
    assert dominates([1, 2], [1, 3]) and not dominates([1, 3], [1, 3]) and not dominates([0, 4], [1, 3])
