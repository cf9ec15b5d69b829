"""The time-aware study: two objectives (validation perplexity, training batches), the run's length
searched, hand-picked configurations enqueued, the Pareto front's weights kept, and its report."""

from __future__ import annotations

import uuid

import optuna
import pytest
from hw3sweep.cli import main as sweep_main
from hw3sweep.objective import dominates, pareto_front, trained_batches, validation_ppl, weights_to_keep
from optuna.distributions import IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial
from sweep_fixtures import REPO, TINY, finish, load, start_sweep, sweep_command, write_corpus

pytestmark = pytest.mark.slow


def test_a_time_aware_study_searches_the_length_and_keeps_the_front(tmp_path) -> None:
    corpus, study = write_corpus(tmp_path / "corpus"), f"time-{uuid.uuid4().hex[:8]}"
    storage = str(tmp_path / "build" / "sweeps" / f"{study}.journal")
    tiny = [item for item in TINY if not item.startswith("epochs=")]  # the length is searched
    command = sweep_command(corpus, study, storage, 5, 1, "--time-aware", "--set", *tiny)
    picked = ["--enqueue", "epochs=1", "dropout=0.05", "--enqueue", "epochs=1", "cooldown=0.5",
              "--enqueue", "seed=5", "epochs=1", "dropout=0.05"]  # fmt: skip
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
    assert loaded.user_attrs["baseline"] == trials[0].params  # recorded when the study started
    assert trials[1].params["epochs"] == 1 and trials[1].params["dropout"] == 0.05
    assert trials[1].params["warmup_batches"] == 50  # the rest is the budget's, not sampled
    assert trials[2].params["epochs"] == 1 and trials[2].params["cooldown"] == 0.5
    # a repeat with another seed: the same parameters, trained with that seed
    assert trials[3].params == trials[1].params and trials[3].user_attrs["hparams"]["seed"] == 5
    assert trials[1].user_attrs["hparams"]["seed"] == 211
    for trial in trials:  # the second value is the batches the run trained: epochs x 2 batches
        assert trained_batches(trial) == 2 * trial.params["epochs"] == 2 * len(trial.user_attrs["history"])
        assert validation_ppl(trial) == pytest.approx(min(r["val_ppl"] for r in trial.user_attrs["history"]))
        assert not trial.intermediate_values  # nothing reported: Optuna prunes one objective only
    # the weights kept on this machine: the Pareto front's, and the other seeds of its configurations
    weights = tmp_path / "build" / "sweeps" / study / "weights"
    kept = sorted(int(p.stem.removeprefix("trial-")) for p in weights.glob("trial-*.pt"))
    front = [t.number for t in pareto_front(trials)]
    repeats = [t.number for t in trials if any(t.params == trials[n].params for n in front)]
    assert kept == sorted(set(front) | set(repeats))
    # enqueuing the same configuration again adds nothing (with either seed)
    again = start_sweep(tmp_path, [*command, *picked])
    output = finish(again)
    assert "already in the study: epochs=1 dropout=0.05" in output
    assert "already in the study: seed=5 epochs=1 dropout=0.05" in output
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


def made_trial(number: int, ppl: float, epochs: int, seed: int = 211, **changes):
    """A complete trial of the full budget, as a time-aware worker records it (no training)."""
    from hw3sweep.budgets import get_budget
    from hw3sweep.space import space_params

    hp = get_budget("full").base().replace(epochs=epochs, seed=seed, **changes)
    params, distributions = space_params(hp)
    distributions["epochs"] = IntDistribution(1, 4)
    batches = 2928 * epochs
    history = [{"epoch": e + 1, "val_ppl": ppl + 10 * (epochs - e - 1)} for e in range(epochs)]
    trial = create_trial(
        values=[ppl, batches],
        params={**params, "epochs": epochs},
        distributions=distributions,
        user_attrs={"hparams": hp.to_dict(), "budget": "full", "history": history, "batches": batches},
    )
    trial.number = number
    return trial


def time_aware_study(tmp_path, trials) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "t.journal")))
    study = optuna.create_study(study_name="t", storage=storage, directions=["minimize", "minimize"])
    for key, value in {"budget": "full", "pruner": "none", "fixed": {}, "time_aware": True}.items():
        study.set_user_attr(key, value)
    study.add_trials(trials)
    return study


def test_the_report_chooses_the_fewest_batches_that_reach_the_baseline(tmp_path, monkeypatch) -> None:
    from hw3sweep.apply import apply_trial
    from hw3sweep.report import chosen_trial, target, write_report

    monkeypatch.chdir(tmp_path)
    # lengths and settings unlike today's defaults (3 epochs, cool-down 0.4), so that each shows
    trials = [made_trial(0, 128.2, 4), made_trial(1, 127.9, 2, cooldown=0.5),
              made_trial(2, 128.5, 2, dropout=0.05), made_trial(3, 135.0, 1, cooldown=0.6),
              made_trial(4, 129.0, 4, dropout=0.2)]  # fmt: skip
    study = time_aware_study(tmp_path, trials)
    assert target(study)[0] == pytest.approx(128.2)  # the baseline's: the study's trial 0
    assert chosen_trial(study).number == 1  # 2 epochs and under 128.2; #2 has 2 epochs but misses it
    out = write_report(study, "t.journal", out=tmp_path / "report.md", evaluate_test=False)
    text = out.read_text()
    assert (
        "Target: validation perplexity 128.2 (the baseline's: the budget's own settings when the study "
        "started, trial(s) #0)" in text
    )
    assert "the run's length is searched (`epochs` from 1 to 4, the baseline's)" in text
    assert "in 5,856 training batches, 2 epochs, 0.50x the baseline's: the fewest" in text
    front = text.split("## The Pareto front")[1].split("##")[0]
    rows = [line for line in front.splitlines() if line.startswith("| ") and "#" in line]
    assert [row.split(" | ")[4] for row in rows] == ["#3", "#1"]  # #0, #2 and #4 are dominated
    assert "| 5,856 | 2 | 127.9 | yes | #1 | cooldown=0.5, epochs=2 |" in front
    assert "Run with one seed (211) so far: not yet confirmed" in text
    assert "--enqueue seed=212 cooldown=0.5 epochs=2`" in text
    assert (tmp_path / "figures" / "pareto_front.png").is_file()
    assert (tmp_path / "figures" / "validation_by_batches.png").is_file()
    # the chosen configuration's length is part of it: --apply writes the epochs too
    config = tmp_path / "submission.toml"
    config.write_text("[hparams]\n", encoding="utf-8")
    apply_trial(config, chosen_trial(study))
    assert "epochs = 2" in config.read_text() and "cooldown = 0.5" in config.read_text()


def test_the_baseline_is_the_studys_own_not_todays_defaults(tmp_path) -> None:
    """A study's choice can become the full profile: its baseline (and target) must stay the settings
    it started from, recorded in the study, not the code's defaults of the day."""
    from hw3.hparams import HParams
    from hw3sweep.objective import BASELINE_ATTR
    from hw3sweep.report import baseline_group, target

    before = {"dropout": 0.1, "weight_decay": 0.2, "cooldown": 0.2}  # not today's defaults
    assert any(getattr(HParams(), k) != v for k, v in before.items())
    today = made_trial(1, 125.3, HParams().epochs)  # the defaults of today, better than the baseline
    trials = [made_trial(0, 128.2, 4, **before), today, made_trial(2, 128.4, 4, seed=212, **before)]
    study = time_aware_study(tmp_path, trials)  # from before the record: trial 0 is its baseline
    assert [t.number for t in baseline_group(study)] == [0, 2]
    assert target(study)[0] == pytest.approx(128.3)
    study.set_user_attr(BASELINE_ATTR, today.params)  # a study that recorded its baseline
    assert [t.number for t in baseline_group(study)] == [1]
    assert target(study)[0] == pytest.approx(125.3)


def test_a_second_seed_that_misses_the_target_moves_the_choice(tmp_path, monkeypatch) -> None:
    from hw3sweep.report import chosen_trial, write_report

    monkeypatch.chdir(tmp_path)
    trials = [made_trial(0, 128.2, 4), made_trial(1, 127.9, 3, cooldown=0.4),
              made_trial(2, 128.9, 3, seed=212, cooldown=0.4), made_trial(3, 128.0, 4, dropout=0.05)]  # fmt: skip
    study = time_aware_study(tmp_path, trials)
    # #1 and #2 are one configuration: its mean over the two seeds, 128.4, misses 128.2
    assert chosen_trial(study).number == 3
    text = write_report(study, "t.journal", out=tmp_path / "report.md", evaluate_test=False).read_text()
    assert "Trial 3: validation perplexity 128.0" in text
    trials.append(made_trial(4, 128.05, 4, seed=212, dropout=0.05))
    (tmp_path / "again").mkdir()
    study = time_aware_study(tmp_path / "again", trials)
    text = write_report(study, "t.journal", out=tmp_path / "again.md", evaluate_test=False).read_text()
    assert "Trial 3: validation perplexity 128.0" in text
    assert (
        "Confirmed with 2 seeds: validation perplexity 128.0 (seed 211, trial 3), 128.1 (seed 212, trial 4); "
        "their mean, 128.0, is what reaches the target." in text
    )


def test_weights_are_kept_for_the_front_and_its_configurations_other_seeds() -> None:
    values = {0: [128.2, 11712], 1: [125.7, 8784], 2: [124.9, 8784], 3: [138.9, 5856], 4: [131.5, 8784]}
    configurations = {0: "full", 1: "short", 2: "short", 3: "two epochs", 4: "other"}
    # #2 (seed 212) dominates #1 (seed 211), but the report chooses the configuration and evaluates
    # its default seed's trial: #1 keeps its weights
    assert weights_to_keep(values, configurations) == {1, 2, 3}
    assert weights_to_keep({0: [3.0], 1: [2.0], 2: [2.5]}, {0: "a", 1: "b", 2: "b"}) == {1, 2}


def test_the_test_split_is_read_once_from_another_seeds_weights_when_the_chosen_ones_are_gone(
    tmp_path, monkeypatch
) -> None:
    from hw3sweep import report

    monkeypatch.chdir(tmp_path)
    trials = [made_trial(0, 128.2, 4), made_trial(1, 125.7, 3, dropout=0.0),
              made_trial(2, 124.9, 3, seed=212, dropout=0.0)]  # fmt: skip
    study = time_aware_study(tmp_path, trials)
    weights = tmp_path / "build" / "sweeps" / "t" / "weights"
    weights.mkdir(parents=True)
    (weights / "trial-2.pt").write_bytes(b"")  # only the second seed's weights are on this machine
    evaluated = []
    monkeypatch.setattr(
        report, "evaluate_test", lambda trial, path, data: evaluated.append(trial.number) or 4.8
    )
    text = report.write_report(study, "t.journal", out=tmp_path / "r.md", data_folder=tmp_path).read_text()
    assert "Trial 1: validation perplexity 125.7" in text  # the default seed's trial stays the choice
    assert (
        "**Test perplexity**: 121.5, evaluated once now, after the choice by validation, for trial 2 (seed 212)"
        in text
    )
    assert evaluated == [2]
    # a second report reads the recorded evaluation back instead of reading the test split again
    again = report.write_report(study, "t.journal", out=tmp_path / "r.md", data_folder=tmp_path).read_text()
    assert "**Test perplexity**: 121.5 (trial 2, another seed), evaluated once on" in again
    assert evaluated == [2]


def test_docs_fewer_batches_is_the_report_of_the_committed_study(tmp_path, monkeypatch) -> None:
    """docs/tuning_fewer_batches.md is what `--report` writes from benchmarks/studies/fewer-batches.journal
    (its one test evaluation is recorded in the study, so no data is needed)."""
    from hw3sweep.report import write_report
    from hw3tools.studies import open_storage

    journal = "benchmarks/studies/fewer-batches.journal"
    monkeypatch.chdir(REPO)  # the report names the storage as the docs do
    study = optuna.load_study(study_name="fewer-batches", storage=open_storage(journal))
    out = tmp_path / "tuning_fewer_batches.md"
    write_report(study, journal, out=out, evaluate_test=False)
    written = (REPO / "docs" / "tuning_fewer_batches.md").read_text().splitlines()
    regenerated = out.read_text().splitlines()
    assert written[3:] == regenerated[3:]  # all but the "Generated by" line, which names --out
    assert written[2] == regenerated[2].replace(str(out), "docs/tuning_fewer_batches.md")
