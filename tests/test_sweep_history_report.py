"""The history study holds every earlier trial with complete settings; a study's report chooses on
validation, evaluates the test split once, and --apply writes submission.toml keeping its comments;
python -m hw3tools.train --from-study re-runs a trial's exact settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
import tomlkit
from hw3.hparams import HParams, profile_defaults
from hw3sweep.apply import applied_settings, apply_trial
from hw3sweep.cli import main as sweep_main
from hw3sweep.report import TEST_EVALUATIONS, chosen_trial
from hw3tools.studies import open_storage
from hw3tools.train import main as train_main
from optuna.trial import TrialState
from sweep_fixtures import REPO, TINY, load, load_benchmark, start_sweep, sweep_command, write_corpus

HISTORY = REPO / "benchmarks" / "studies" / "history.journal"


def history() -> optuna.Study:
    return optuna.load_study(study_name="history", storage=open_storage(str(HISTORY)))


def test_history_holds_every_recorded_trial_with_complete_settings() -> None:
    trials = history().get_trials()
    assert len(trials) == 43
    sources = {t.user_attrs["source"].split(" at ")[0] for t in trials}
    assert "full_profile_cpu.json" in sources and "gpu_sweep_h200.json#tied_dropout005" in sources
    assert sum(s.startswith("schedule_proxy") for s in sources) == 4
    for trial in trials:
        hp = HParams.from_dict(trial.user_attrs["hparams"])  # complete: every field, valid
        assert set(trial.user_attrs["hparams"]) == set(HParams().to_dict())
        assert {"device", "precision", "torch_version"} <= set(trial.user_attrs["run"])
        name = trial.user_attrs["run"]["device_name"]  # "2-core AMD EPYC (AVX2, no bf16)", whole
        assert name and name.count("(") == name.count(")"), name
        assert trial.user_attrs["git"]["commit"] and "judged_on_test" in trial.user_attrs
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if trial.user_attrs["history"]:
            assert sorted(trial.intermediate_values) == [row["epoch"] for row in trial.user_attrs["history"]]
        assert trial.params["epochs"] == hp.epochs
    assert sum(t.user_attrs["judged_on_test"] for t in trials) == 25


def test_history_chooses_the_4_epoch_profile_by_validation() -> None:
    """The full profile before the time-aware study (docs/tuning_fewer_batches.md) moved it."""
    chosen = chosen_trial(history())
    assert chosen.user_attrs["source"].startswith("full_profile_cpu.json")
    before = profile_defaults("full").replace(dropout=0.1, weight_decay=0.2, cooldown=0.2, epochs=4)
    assert HParams.from_dict(chosen.user_attrs["hparams"]) == before
    assert round(chosen.value, 1) == 128.1 and round(chosen.user_attrs["test_ppl"], 1) == 120.8


def test_the_committed_history_is_what_the_importer_writes() -> None:
    importer = load_benchmark("import_history")
    if subprocess.run(["git", "cat-file", "-e", importer.PIN], cwd=REPO, capture_output=True).returncode:
        pytest.skip(
            f"commit {importer.PIN} is not in this clone (shallow?): the importer reads the records from it"
        )
    assert importer.history_journal() == HISTORY.read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_tests_once_and_apply_keeps_the_comments(tmp_path, capsys) -> None:
    corpus, storage = write_corpus(tmp_path / "corpus"), str(tmp_path / "build" / "sweeps" / "r.journal")
    process = start_sweep(tmp_path, sweep_command(corpus, "r", storage, 4, 2, "--set", *TINY))
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    study = load("r", storage)
    chosen = chosen_trial(study)
    assert chosen.value == min(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))
    # the report, run where the trials ran: the chosen trial's weights are there, its test is evaluated once
    args = ["--report", "--study", "r", "--storage", storage, "--corpus", str(corpus)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert sweep_main(args) == 0
        assert sweep_main(args) == 0
    evaluations = load("r", storage).user_attrs[TEST_EVALUATIONS]
    assert [e["trial"] for e in evaluations] == [chosen.number]  # twice reported, once evaluated
    report = (tmp_path / "build" / "sweeps" / "r" / "report.md").read_text()
    assert f"Trial {chosen.number}: validation perplexity" in report and "evaluated once" in report
    assert len(list((tmp_path / "build" / "sweeps" / "r" / "figures").glob("*.png"))) >= 3
    # --apply: the tuned settings land in [hparams], the comments stay
    config = tmp_path / "submission.toml"
    shutil.copy(REPO / "submission.toml", config)
    diff = apply_trial(config, chosen)
    text = config.read_text()
    assert "# emsize = 250              # embedding size, [200, 250]" in text and diff.startswith("---")
    table = tomlkit.parse(text)["hparams"]
    written = applied_settings(chosen)
    assert written and all(table[k] == v for k, v in written.items()) and "max_train_batches" not in table
    assert set(written) <= set(chosen.params) | {"warmup_batches"}  # the quick profile's own warm-up
    assert apply_trial(config, chosen) == ""  # already applied: nothing to change


@pytest.mark.e2e
def test_from_study_re_runs_a_trials_exact_settings(real_data_dir, tmp_path) -> None:
    storage = str(tmp_path / "s.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage, create=True))
    hp = profile_defaults("quick").replace(
        epochs=1, max_train_batches=2, max_eval_batches=2, dropout=0.05, nhead=4, emsize=248
    )
    trial = study.ask()
    trial.set_user_attr("hparams", hp.to_dict())
    study.tell(trial, 1.0)
    out = tmp_path / "run"
    args = [
        "--from-study",
        "s",
        "--trial",
        "0",
        "--storage",
        storage,
        "--data-dir",
        str(real_data_dir),
        "--out",
        str(out),
    ]
    assert train_main([*args, "--threads", "1"]) == 0
    from hw3.metrics import read_metrics

    assert read_metrics(out / "metrics.json")["hparams"] == hp.to_dict()
    assert train_main([*args[:6], "--profile", "full"]) == 2  # the trial's settings, not a profile's


def test_from_study_names_a_missing_trial(tmp_path, capsys) -> None:
    assert train_main(["--from-study", "history", "--trial", "999", "--storage", str(HISTORY)]) == 2
    assert "trials 0-42, not 999" in capsys.readouterr().err
    assert train_main(["--from-study", "nope", "--trial", "0", "--storage", str(tmp_path / "x.journal")]) == 2
    assert "no study journal" in capsys.readouterr().err


def test_docs_tuning_is_the_history_report() -> None:
    text = (REPO / "docs" / "tuning.md").read_text()
    assert "Trial 0: validation perplexity 128.1" in text and "120.8, measured once" in text
    assert all(
        (REPO / "docs" / "tuning" / f"{n}.png").is_file()
        for n in ("optimization_history", "parallel_coordinate", "param_importances")
    )
    assert (
        Path(REPO / "docs" / "tuning" / "summary.md")
        .read_text()
        .splitlines()[2]
        .startswith("| dropout=0.1, weight_decay=0.2, cooldown=0.2, epochs=4 | 128.1, 127.6")
    )
