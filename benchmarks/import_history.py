"""Import every trial measured before the tuner existed into the study ``history``.

    PYTHONPATH=code python benchmarks/import_history.py [--out benchmarks/studies/history.journal]

The records are read from git, as they were at :data:`PIN` (the last commit that kept them in
``benchmarks/results/``), so the import can be repeated after the files were retired and always
gives the same journal, byte for byte (a test checks the committed one). Each trial gets its
complete hyper-parameters, not a difference from a default: the record's own ``hparams`` where it
has them, else the defaults of ``hw3.hparams`` at the commit that ran it (read from git) with the
run's command line parsed by ``hw3tools.train``'s own parser (or the GPU sweep's overrides); a field that
did not exist yet gets the value that meant the old behaviour (:data:`ABSENT_MEANT`). A run stopped
before its last epoch is PRUNED (a person or a deadline stopped it), a finished one COMPLETE with
its best validation perplexity. Measurements kept only in the README (the shuffle probe, an
interrupted fp32 run) are imported from :data:`README_TRIALS`.

``judged_on_test`` marks the trials whose comparison used the test split (read from the README and
the records' notes at :data:`PIN`): before this change, the test split was a tuning set for them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hw3.hparams import HParams
from hw3sweep.space import space_params
from hw3tools.repo import ROOT as REPO
from hw3tools.studies import HPARAMS_ATTR, RECORDED_DIR, journal_path
from hw3tools.train import build_parser as train_parser
from hw3tools.train import parse_override
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import TrialState

PIN = "6ebe729"  # main's commit holding every record in benchmarks/results
RESULTS = "benchmarks/results"
STUDY = "history"
IMPORTER = "hw3sweep.history"  # the name the committed journal records (its module when it was written)
# fields added after some runs: the value that reproduces what those runs did
ABSENT_MEANT = {
    "tie_weights": False,
    "decoupled_weight_decay": True,
    "shuffle_batches": False,
    "random_offset": False,
}
# searched by hand before the tuner: history's extra parameters (for its figures)
EXTRA_PARAMS = {
    "epochs": IntDistribution(1, 1000),
    "tie_weights": CategoricalDistribution([True, False]),
    "shuffle_batches": CategoricalDistribution([True, False]),
    "random_offset": CategoricalDistribution([True, False]),
}
GPU_RUN_COMMIT = "1050420"  # gpu_sweep_h200.json: "run at commit 1050420"
# record (file, or file#trial) -> whether its comparison used the test split
JUDGED_ON_TEST = {
    "full_profile_cpu.json": True,  # adopted: test 120.8 against 128.4
    "full_profile_seed212_cpu.json": True,  # test 121.1, "0.002 nats from seed 211"
    "model_optimizer_proxy_3000_steps_cpu.json#heads4": True,  # "-0.002 nats on test"
    "model_optimizer_proxy_3000_steps_cpu.json#warmup25": True,  # test 200.2 against 194.3
    "model_optimizer_proxy_3000_steps_cpu.json#beta2_0999": True,  # test 175.9 against 194.3
    "schedule_proxy_3000_steps_cpu.json#base": True,  # the schedules compared on test
    "schedule_proxy_3000_steps_cpu.json#d2z": True,
    "schedule_proxy_3000_steps_cpu.json#cd05": True,
    "schedule_proxy_3000_steps_cpu.json#base_seed212": True,
    "trial_12ep_cooldown03_cpu.json": True,  # test 150.5 against 150.7
    "trial_beta2_098_10ep_full_profile_cpu.json": True,  # test 142.5 against 145.0
    "trial_beta2_09995_full_profile_cpu.json": True,  # test 129.4 against 128.4
    "trial_beta2_0999_5ep_full_profile_cpu.json": True,  # test 131.0
    "trial_dropout005_beta2_0999_full_profile_cpu.json": True,  # test 129.1
    "trial_dropout015_beta2_0999_full_profile_cpu.json": True,  # test 130.4
    "trial_dropout02_full_profile_cpu.json": True,  # test 145.0 against 150.7
    "trial_dropout03_cooldown05_13ep_cpu.json": True,  # test 171.9 against 166.0
    "trial_fixed_boundaries_full_profile_cpu.json": True,  # test 155.2
    "trial_in_order_full_profile_cpu.json": True,  # test 166.0
    "trial_no_weight_decay_full_profile_cpu.json": True,  # test 150.7
    "trial_tied_dropout005_full_profile_cpu.json": True,  # test 134.0
    "trial_tied_weights_full_profile_cpu.json": True,  # test 136.8 against 142.5
    "trial_wd01_beta2_0999_full_profile_cpu.json": True,  # test 128.4 against 142.5
    "weight_average_proxy_3000_steps_cpu.json#model": True,  # the EMA's control, on test
    "weight_average_proxy_3000_steps_cpu.json#ema_0.998": True,  # "-0.006 on test, inside the spread"
}


@dataclass
class Recorded:
    """One measured run, ready to become a trial."""

    source: str  # "x.json", "x.json#name" or "README"
    commit: str  # the commit that recorded it
    hp: HParams
    history: list[dict[str, Any]]
    finished: bool  # every planned epoch ran
    budget: str
    run: dict[str, Any]
    train_seconds: float | None
    attrs: dict[str, Any] = field(default_factory=dict)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def first_commit(path: str) -> tuple[str, str]:
    """The commit (and its date) that added ``path`` under its name: the run's code is that
    commit's or an earlier one (a previous default's record was renamed when it was superseded)."""
    lines = git("log", "--diff-filter=A", "--format=%h %cI", PIN, "--", path).split("\n")
    sha, date = [line for line in lines if line][-1].split()
    return sha, date


_DEFAULTS: dict[str, dict[str, Any]] = {}


def defaults_at(commit: str) -> dict[str, Any]:
    """``HParams()``'s fields as ``code/hw3/hparams.py`` defined them at ``commit``."""
    if commit not in _DEFAULTS:
        module = types.ModuleType(f"hparams_{commit}")
        sys.modules[module.__name__] = module  # dataclasses looks the module up
        exec(compile(git("show", f"{commit}:code/hw3/hparams.py"), module.__name__, "exec"), module.__dict__)
        _DEFAULTS[commit] = {**ABSENT_MEANT, **module.HParams().to_dict()}
    return dict(_DEFAULTS[commit])


def hparams_from_command(commit: str, command: str) -> HParams:
    """The hyper-parameters a ``python -m hw3tools.train`` command line ran with at ``commit``."""
    argv = shlex.split(command.split(" (")[0])[3:]  # after "python -m hw3tools.train"
    args = train_parser().parse_args(argv)
    settings = defaults_at(commit)
    if args.profile == "quick":
        raise ValueError(f"{command}: a quick-profile run is not a trial")
    settings.update(parse_override(item) for item in args.set)
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    return HParams.from_dict(settings)


def complete(hparams: dict[str, Any]) -> HParams:
    return HParams.from_dict({**ABSENT_MEANT, **hparams})


def machine_run(machine: str, device: str, torch_version: str | None) -> dict[str, Any]:
    gpu = device.startswith("cuda")
    return {
        "device": device,
        "device_name": "NVIDIA H200" if gpu else _first_part(machine) or "not recorded",
        "precision": "bf16 autocast" if gpu or "bf16 autocast" in machine else "fp32",
        "torch_version": torch_version or "not recorded",
    }


def _first_part(machine: str) -> str:
    """``"2-core AMD EPYC (AVX2, no bf16)"`` of ``"2-core AMD EPYC (AVX2, no bf16), torch 2.13.0, fp32"``:
    the text before the first comma outside parentheses."""
    depth = 0
    for index, char in enumerate(machine):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            return machine[:index].strip()
    return machine.strip()


def seconds_of(history: list[dict[str, Any]]) -> float | None:
    values = [row.get("seconds") for row in history]
    return sum(values) if values and all(isinstance(v, int | float) for v in values) else None


def single_runs(name: str, record: dict[str, Any], commit: str) -> Iterator[Recorded]:
    """A ``python -m hw3tools.train`` record (metrics.json plus notes)."""
    hp = complete(record["hparams"])
    history = record["history"]
    attrs = {"test_ppl": record["test_ppl"]} if "test_ppl" in record else {}
    notes = [record[k] for k in ("note", "stopped", "command", "command_as_run", "reproduce") if k in record]
    attrs["note"] = " | ".join(notes)
    yield Recorded(
        name, commit, hp, history, len(history) == hp.epochs, "full",
        machine_run(record.get("machine", ""), record.get("device", "cpu"), record.get("torch_version")),
        record.get("timings", {}).get("train_seconds", seconds_of(history)), attrs,
    )  # fmt: skip


def gpu_trials(name: str, record: dict[str, Any], commit: str) -> Iterator[Recorded]:
    """benchmarks/gpu_sweep.py's trials: the full profile's defaults then (at the run's commit) plus
    each trial's overrides."""
    for trial_name, trial in record["trials"].items():
        settings = defaults_at(GPU_RUN_COMMIT)
        settings.update(parse_override(item) for item in trial["set"])
        hp = HParams.from_dict(settings)
        history = trial["history"]
        attrs = {"note": f"{record['note']} | {record['command']}"}
        if trial.get("test_ppl") is not None:
            attrs["test_ppl"] = trial["test_ppl"]
        run = machine_run("NVIDIA H200", "cuda:0", record["machine"]["torch"])
        yield Recorded(f"{name}#{trial_name}", GPU_RUN_COMMIT, hp, history, len(history) == trial["epochs_planned"],
                       "full", run, seconds_of(history), attrs)  # fmt: skip


def proxy_trials(name: str, record: dict[str, Any], commit: str) -> Iterator[Recorded]:
    """The 3,000-step proxies: several ``python -m hw3tools.train`` runs per file."""
    for trial_name, trial in record["trials"].items():
        rebuilt = hparams_from_command(commit, trial["command"])
        hp = complete(trial["hparams"]) if "hparams" in trial else rebuilt
        if hp != rebuilt:
            raise ValueError(f"{name}#{trial_name}: recorded {hp} but its command gives {rebuilt}")
        history = trial.get("history", [])
        attrs: dict[str, Any] = {
            "note": " | ".join([record["note"], trial["command"], trial.get("stopped", "")]).rstrip(" |")
        }
        if "test_ppl" in trial:
            attrs["test_ppl"] = trial["test_ppl"]
        if "train_log" in trial:
            attrs["train_log"] = trial["train_log"]
        run = machine_run(record["machine"], "cpu", trial.get("torch_version"))
        yield Recorded(f"{name}#{trial_name}", commit, hp, history, len(history) == hp.epochs, "proxy", run,
                       trial.get("timings", {}).get("train_seconds", seconds_of(history)), attrs)  # fmt: skip


def weight_average_trials(name: str, record: dict[str, Any], commit: str) -> Iterator[Recorded]:
    """probe_weight_average.py: the model (the control) and each average of its weights."""
    hp = complete(record["hparams"])
    run = machine_run(record["machine"], record["device"], record["torch_version"])
    rows = record["epochs"]
    keys = {"model": "val_ppl", **{f"ema_{d}": f"ema_{d}_val_ppl" for d in ("0.998", "0.9995")}}
    for trial_name, key in keys.items():
        history = [{"epoch": row["epoch"], "val_ppl": row[key]} for row in rows]
        if trial_name == "model":
            history = [{k: v for k, v in row.items() if not k.startswith("ema_")} for row in rows]
        attrs = {
            "note": f"{record['note']} | {record['command']}",
            "test_ppl": record[f"test_ppl_{trial_name}"],
        }
        if trial_name != "model":
            attrs["variant"] = (
                f"EMA of the weights, decay {trial_name[4:]} (benchmarks/probe_weight_average.py)"
            )
        yield Recorded(
            f"{name}#{trial_name}", commit, hp, history, True, "proxy", run, record["seconds"], attrs
        )


def readme_trials() -> Iterator[Recorded]:
    """Measurements kept only in the README at PIN."""
    shuffle_base = defaults_at("3e16a3e")  # benchmarks/probe_shuffle.py, rerun there (figures reproduced)
    shuffle_base.update(epochs=1, max_train_batches=1000, cooldown=0.3, random_offset=False, dropout=0.2,
                        weight_decay=0.0, adam_beta2=0.98)  # fmt: skip
    probe = [(211, False, 352.72), (211, True, 325.57), (212, False, 353.8), (212, True, 328.6)]
    for seed, shuffled, ppl in probe:
        hp = HParams.from_dict({**shuffle_base, "seed": seed, "shuffle_batches": shuffled})
        note = ("benchmarks/probe_shuffle.py: the same first 1,000 chunks in order or shuffled, one epoch "
                f"(README at {PIN}; seed 211 rerun at 3e16a3e, seed 212 at 155ced5)")  # fmt: skip
        yield Recorded(f"README#probe_shuffle_seed{seed}_{'shuffled' if shuffled else 'in_order'}",
                       "155ced5" if seed == 212 else "3e16a3e", hp, [{"epoch": 1, "val_ppl": ppl}], True, "probe",
                       {"device": "cpu", "device_name": "2-core CPU", "precision": "not recorded",
                        "torch_version": "not recorded"}, None, {"note": note})  # fmt: skip
    record = json.loads(git("show", f"{PIN}:{RESULTS}/trial_dropout005_beta2_0999_full_profile_cpu.json"))
    hp = complete(record["hparams"]).replace(precision="auto")
    yield Recorded("README#dropout005_fp32_interrupted", "fcf7beb", hp,
                   [{"epoch": 1, "val_ppl": 174.0}, {"epoch": 2, "val_ppl": 149.1}], False, "full",
                   machine_run("2-core AMD EPYC (AVX2, no bf16), fp32", "cpu", "2.13.0+cpu"), None,
                   {"note": "an fp32 attempt at dropout 0.05, interrupted in epoch 3 (its record's note)"})  # fmt: skip


def recorded_runs() -> list[Recorded]:
    """Every measured run at PIN, oldest first."""
    runs: list[tuple[str, Recorded]] = []
    for path in sorted(git("ls-tree", "--name-only", PIN, f"{RESULTS}/").split()):
        if not path.endswith(".json"):
            continue
        name = Path(path).name
        record = json.loads(git("show", f"{PIN}:{path}"))
        commit, date = first_commit(path)
        if name.startswith("gpu_sweep"):
            reader = gpu_trials
        elif name.startswith("weight_average"):
            reader = weight_average_trials
        elif "trials" in record:
            reader = proxy_trials
        else:
            reader = single_runs
        runs += [(date, run) for run in reader(name, record, commit)]
    for run in readme_trials():
        runs.append((git("show", "-s", "--format=%cI", run.commit).strip(), run))
    runs.sort(key=lambda pair: pair[0])  # stable: a file's trials keep their order
    for date, run in runs:
        run.attrs["recorded"] = date
    return [run for _, run in runs]


def to_trial(run: Recorded) -> optuna.trial.FrozenTrial:
    params, distributions = space_params(run.hp)
    for name, distribution in EXTRA_PARAMS.items():
        params[name], distributions[name] = getattr(run.hp, name), distribution
    curve = {int(row["epoch"]): float(row["val_ppl"]) for row in run.history}
    complete_ = dt.datetime.fromisoformat(run.attrs["recorded"])
    start = complete_ - dt.timedelta(seconds=run.train_seconds or 0)
    state = TrialState.COMPLETE if run.finished else TrialState.PRUNED
    value = min(curve.values()) if run.finished else (curve[max(curve)] if curve else None)
    user_attrs = {
        HPARAMS_ATTR: run.hp.to_dict(), "profile": "full", "budget": run.budget, "source": f"{run.source} at {PIN}",
        "history": run.history, "run": run.run, "git": {"commit": run.commit, "dirty": None},
        "judged_on_test": JUDGED_ON_TEST.get(run.source, False), **run.attrs,
    }  # fmt: skip
    if run.train_seconds is not None:
        user_attrs["train_seconds"] = run.train_seconds
    trial = optuna.trial.FrozenTrial(
        number=0, state=state, value=value, datetime_start=start, datetime_complete=complete_,
        params=params, distributions=distributions, user_attrs=user_attrs, system_attrs={},
        intermediate_values=curve, trial_id=0,
    )  # fmt: skip
    trial._validate()  # what study.add_trial checks, with the source named on failure
    return trial


class MemoryBackend(BaseJournalBackend):
    """A journal in memory: the import's logs, written to the file once, with one worker id."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs += logs


def history_journal() -> str:
    """The ``history`` study as journal lines (JSON, one operation a line), always the same."""
    backend = MemoryBackend()
    study = optuna.create_study(
        study_name=STUDY, storage=optuna.storages.JournalStorage(backend), direction="minimize"
    )
    study.set_user_attr("budget", "mixed")
    study.set_user_attr("objective", "validation perplexity (best epoch)")
    study.set_user_attr("imported_from", f"{RESULTS}/*.json and the README at {PIN} ({IMPORTER})")
    for run in recorded_runs():
        study.add_trial(to_trial(run))
    # a fixed worker id instead of a random one per import: the same records give the same file
    return "".join(json.dumps({**log, "worker_id": IMPORTER}) + "\n" for log in backend.logs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/import_history.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(journal_path(STUDY, RECORDED_DIR)))
    args = parser.parse_args(argv)
    from hw3.files import write_atomic

    text = history_journal()
    write_atomic(args.out, text)
    print(f"{args.out}: {text.count(chr(10))} journal lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
