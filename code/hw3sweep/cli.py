"""``python -m hw3sweep`` (``invoke sweep``): run, report and apply a tuning study.

    python -m hw3sweep [--study NAME] [--trials N] [--workers K] [--timeout S] [--storage URL]
                       [--budget quick|proxy|full] [--pruner median|halving|none] [--set NAME=VALUE ...]
                       [--time-aware [--target PPL]] [--enqueue NAME=VALUE ...]
    python -m hw3sweep --report [--study NAME] [--storage URL] [--out FILE.md]
    python -m hw3sweep --apply [--study NAME] [--storage URL] [--config submission.toml] [--trial N]

A run starts K worker processes (:mod:`hw3sweep.worker`) on this machine against one study and shows
each trial's epochs and end as they come; another machine joins the same study by running the same command with the
same ``--storage`` (PostgreSQL). ``--trials N`` is the study's target of finished (complete or
pruned) trials, whoever runs them: a second machine's same command adds workers, not trials, and
running it again after the target is reached does nothing. Each worker gets cores / K threads.

``--time-aware`` makes the study two-objective (:mod:`hw3sweep.objective`): validation perplexity
and training batches, the run's length searched up to the budget's epochs. ``--enqueue`` adds one
hand-picked configuration (the budget's settings with these changes) to be tried next, once;
repeated, one for each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from hw3.download import DataError, wikitext2_dir
from hw3.hparams import HParams
from hw3tools.studies import (
    HPARAMS_ATTR,
    JOURNAL_SUFFIX,
    SWEEPS_DIR,
    StudyError,
    check_study_name,
    is_url,
    study_location,
)
from hw3tools.train import parse_override
from optuna.trial import TrialState

from hw3sweep.budgets import BUDGETS, Budget, get_budget
from hw3sweep.objective import (
    BASELINE_ATTR,
    SEED_ATTR,
    TARGET_ATTR,
    TIME_AWARE_ATTR,
    describe,
    directions,
    trained_batches,
    validation_ppl,
)
from hw3sweep.report import fmt
from hw3sweep.space import space_params
from hw3sweep.storage import DEFAULT_HEARTBEAT_S, budget_lock, open_sweep_storage
from hw3sweep.worker import FINISHED

DEFAULT_TRIALS = 10
POLL_S = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hw3sweep",
        description="Tune the hyper-parameters in the assignment's box as an Optuna study.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--report", action="store_true", help="write the study's report (no training)")
    action.add_argument("--apply", action="store_true", help="write the best trial into submission.toml")
    parser.add_argument(
        "--study", help="the study's name (default: sweep-BUDGET; for --report/--apply: the latest)"
    )
    parser.add_argument(
        "--storage", help="journal file or postgresql+psycopg:// URL (default: build/sweeps/STUDY.journal)"
    )
    parser.add_argument(
        "--trials", type=int, default=DEFAULT_TRIALS, help="finished trials the study should reach"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    parser.add_argument("--timeout", type=float, help="seconds after which workers start no new trial")
    parser.add_argument("--budget", choices=list(BUDGETS), help="how long each trial trains (default: proxy)")
    parser.add_argument("--pruner", choices=["median", "halving", "none"],
                        help="default: median (none for --time-aware, which Optuna cannot prune)")  # fmt: skip
    parser.add_argument("--time-aware", action="store_true",
                        help="two objectives: validation perplexity and training batches (epochs searched)")  # fmt: skip
    parser.add_argument("--target", type=float,
                        help="--time-aware: the validation perplexity to reach (default: the baseline trial's)")  # fmt: skip
    parser.add_argument("--enqueue", nargs="+", action="append", default=[], metavar="NAME=VALUE",
                        help="try this configuration (the budget's settings with these changes) next, once; "
                             "repeat --enqueue for more")  # fmt: skip
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                        help="fix hyper-parameters for every trial (a searched one is then not searched)")  # fmt: skip
    parser.add_argument(
        "--data-dir", help="the WikiText-2 folder (default: HW3_DATA_DIR, the cache, a download)"
    )
    parser.add_argument("--corpus", help="a folder of wiki.{train,valid,test}.tokens used unchecked (tests)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (K workers share one GPU)")
    parser.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT_S,
                        help="seconds between a running trial's heartbeats; 3 missed = a dead worker")  # fmt: skip
    parser.add_argument("--seed", type=int, default=211, help="base of the samplers' seeds")
    parser.add_argument("--no-report", action="store_true", help="do not write the report after the run")
    parser.add_argument("--out", help="--report: the markdown file (default: build/sweeps/STUDY/report.md)")
    parser.add_argument("--no-test", action="store_true", help="--report: do not evaluate the test split")
    parser.add_argument("--config", default="submission.toml", help="--apply: the file to write")
    parser.add_argument("--trial", type=int, help="--apply: this trial instead of the best")
    return parser


def latest_study() -> str:
    """The study whose journal under build/sweeps changed last."""
    journals = sorted(SWEEPS_DIR.glob(f"*{JOURNAL_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    if not journals:
        raise StudyError(f"no study in {SWEEPS_DIR}: run a sweep first, or pass --study NAME")
    return journals[-1].name[: -len(JOURNAL_SUFFIX)]


def study_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What every worker of the study must agree on (stored in the study, checked on joining)."""
    budget = get_budget(args.budget or "proxy")
    fixed = dict(parse_override(item) for item in args.set)
    budget.base(fixed)  # refuse an unknown name or a value outside the box now
    if args.time_aware and args.pruner not in (None, "none"):
        raise StudyError(
            f"--pruner {args.pruner} with --time-aware: Optuna cannot prune a two-objective trial; "
            "leave --pruner out"
        )
    if args.target is not None and not args.time_aware:
        raise StudyError("--target is the time-aware study's goal: add --time-aware, or leave --target out")
    pruner = args.pruner or ("none" if args.time_aware else "median")
    return {"budget": budget.name, "pruner": pruner, "fixed": fixed, TIME_AWARE_ATTR: args.time_aware}


def trial_params(
    budget: Budget, fixed: dict[str, Any], changes: dict[str, Any], time_aware: bool
) -> dict[str, Any]:
    """The Optuna parameters of the budget's settings with ``changes`` (every searched one, so a
    trial enqueued with them samples nothing), less the fixed ones."""
    hp = budget.base(fixed).replace(**changes)  # refuses a value outside the box
    params, _ = space_params(hp)
    if time_aware:
        params["epochs"] = hp.epochs
    return {k: v for k, v in params.items() if k not in fixed}


def open_study(
    location: str, name: str, settings: dict[str, Any], target: float | None = None
) -> optuna.Study:
    """Create the study or join it; a new study gets the budget's own settings as its first trial
    (the baseline). Refuses to join a study created with other settings."""
    storage = open_sweep_storage(location)
    time_aware = settings[TIME_AWARE_ATTR]
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions(time_aware), load_if_exists=True
    )
    with budget_lock(location, name):
        # a study from before the time-aware one has no such attribute: it is a perplexity study
        recorded = {
            key: study.user_attrs.get(key, False if key == TIME_AWARE_ATTR else None) for key in settings
        }
        if recorded["budget"] is None:
            for key, value in settings.items():
                study.set_user_attr(key, value)
            study.set_user_attr("objective", describe(time_aware))
            if target is not None:
                study.set_user_attr(TARGET_ATTR, target)
            baseline = trial_params(get_budget(settings["budget"]), settings["fixed"], {}, time_aware)
            study.set_user_attr(BASELINE_ATTR, baseline)
            study.enqueue_trial(baseline)
        elif recorded != settings:
            differ = ", ".join(
                f"{k}: {recorded[k]!r} there, {settings[k]!r} here"
                for k in settings
                if recorded[k] != settings[k]
            )
            raise StudyError(f"study {name!r} was started with other settings ({differ}); pass the same, or another --study")  # fmt: skip
        elif target is not None and study.user_attrs.get(TARGET_ATTR) != target:
            raise StudyError(
                f"study {name!r} has target {study.user_attrs.get(TARGET_ATTR)!r}, not {target!r}: "
                "a study keeps the goal it started with; leave --target out, or use another --study"
            )
    return study


def enqueue(study: optuna.Study, location: str, settings: dict[str, Any], items: list[str]) -> None:
    """Add one hand-picked configuration to be tried next, once: the budget's settings with the
    given changes; ``seed=N`` among them repeats a configuration with another seed (the seed is not
    searched, so it travels as the trial's user attribute)."""
    changes = dict(parse_override(item) for item in items)
    clash = sorted(set(changes) & set(settings["fixed"]))
    if clash:
        raise StudyError(f"--enqueue {', '.join(clash)}: fixed for the whole study by --set; leave it out")
    seed = changes.pop("seed", None)
    params = trial_params(
        get_budget(settings["budget"]), settings["fixed"], changes, settings[TIME_AWARE_ATTR]
    )
    default_seed = settings["fixed"].get("seed", HParams().seed)
    with budget_lock(location, study.study_name):
        known = any(
            t.params == params
            and t.user_attrs.get(SEED_ATTR, t.user_attrs.get(HPARAMS_ATTR, {}).get("seed", default_seed))
            == (default_seed if seed is None else seed)
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL  # a failed trial does not count: it was retried or may be
        )
        if not known:
            study.enqueue_trial(params, user_attrs=None if seed is None else {SEED_ATTR: seed})
    print(f"already in the study: {' '.join(items)}" if known else f"enqueued: {' '.join(items)}", flush=True)


def corpus_folder(args: argparse.Namespace) -> Path:
    if args.corpus:
        return Path(args.corpus)
    return wikitext2_dir(data_dir=args.data_dir)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    ppl, batches = validation_ppl(trial), trained_batches(trial)
    value = (
        "" if ppl is None else f"validation ppl {fmt(ppl):>8s}" + (f", {batches} batches" if batches else "")
    )
    history = trial.user_attrs.get("history") or []
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    return (
        f"trial {trial.number:3d} {trial.state.name:8s} {value:22s} {len(history)} epoch(s) {seconds:6.0f} s"
    )


def new_epochs(trial: optuna.trial.FrozenTrial, shown: dict[int, int]) -> list[str]:
    """Lines for the epochs a running trial has finished since the last call (its ``history``,
    written after each epoch); ``shown`` remembers how many each trial has had printed."""
    history = trial.user_attrs.get("history") or []
    planned = trial.user_attrs.get(HPARAMS_ATTR, {}).get("epochs", "?")
    lines = [
        f"trial {trial.number:3d} epoch {row['epoch']}/{planned}: validation ppl {fmt(row['val_ppl'])}"
        for row in history[shown.get(trial.number, 0) :]
    ]
    shown[trial.number] = len(history)
    return lines


def run(args: argparse.Namespace) -> int:
    settings = study_settings(args)
    name = check_study_name(args.study or f"sweep-{settings['budget']}")
    if args.workers < 1 or args.trials < 1:
        raise StudyError("--workers and --trials must be at least 1")
    location = study_location(name, args.storage)
    folder = corpus_folder(args)
    study = open_study(location, name, settings, args.target)
    for items in args.enqueue:
        enqueue(study, location, settings, items)
    threads = max(1, cores() // args.workers)
    logs = SWEEPS_DIR / name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(
        f"study {name!r} in {location}: {args.trials} trials, budget {settings['budget']} "
        f"({get_budget(settings['budget']).description}), pruner {settings['pruner']}; "
        f"{'time-aware (perplexity and batches), ' if settings[TIME_AWARE_ATTR] else ''}"
        f"{args.workers} worker(s) here with {threads} thread(s) each; logs in {logs}",
        flush=True,
    )
    workers = [
        start_worker(args, name, location, settings, folder, threads, i, logs) for i in range(args.workers)
    ]
    try:
        outcome = watch(study, workers, args.trials)
    except KeyboardInterrupt:
        print("\ninterrupted: the workers fail their running trials and enqueue them again", flush=True)
        for process, _ in workers:
            process.send_signal(signal.SIGTERM)
        for process, _ in workers:
            process.wait(timeout=120)
        return 130
    if outcome != 0:
        return outcome
    if not args.no_report:
        from hw3sweep.report import write_report

        write_report(study, location, data_folder=folder, evaluate_test=not args.no_test)
    return 0


def start_worker(
    args: argparse.Namespace, name: str, location: str, settings: dict[str, Any], folder: Path,
    threads: int, index: int, logs: Path,
) -> tuple[subprocess.Popen, Path]:  # fmt: skip
    command = [
        sys.executable, "-m", "hw3sweep.worker", "--study", name, "--storage", location,
        "--trials", str(args.trials), "--budget", settings["budget"], "--pruner", settings["pruner"],
        "--fixed", json.dumps(settings["fixed"]), "--corpus", str(folder), "--device", args.device,
        "--threads", str(threads), "--heartbeat", str(args.heartbeat), "--seed", str(args.seed),
        "--index", str(index),
    ]  # fmt: skip
    if settings[TIME_AWARE_ATTR]:
        command.append("--time-aware")
    if args.timeout:
        command += ["--timeout", str(args.timeout)]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TQDM_DISABLE": "1",
    }
    log = logs / f"worker-{index}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, log


def watch(study: optuna.Study, workers: list[tuple[subprocess.Popen, Path]], target: int) -> int:
    """Print each trial's epochs and end as they come until every worker has exited; 0 when the
    study reached its target (or the workers' timeout), 1 when workers failed before it.

    Trials that had finished before this run are listed once as such; the time left is estimated
    from the trials this run finished, so it is not shown before the first of them ends."""
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    seen: set[int] = set()
    epochs_shown: dict[int, int] = {}
    started = time.time()
    while True:
        running = [p for p, _ in workers if p.poll() is None]
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                for line in new_epochs(trial, epochs_shown):
                    print(line, flush=True)
            if not trial.state.is_finished() or trial.number in seen:
                continue
            seen.add(trial.number)
            done = sum(t.state in FINISHED for t in trials)
            if trial.number in earlier:
                print(f"{describe_trial(trial)}   (finished before this run)", flush=True)
                continue
            ended_here = len(seen - earlier)
            left = max(0, target - done) * (time.time() - started) / ended_here
            print(f"{describe_trial(trial)}   {done}/{target} done, ~{left / 60:.0f} min left", flush=True)
        if not running:
            break
        time.sleep(POLL_S)
    failed = [(p, log) for p, log in workers if p.returncode not in (0, 130)]
    for process, log in failed:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print(
            f"worker {process.args[-1]} exited with {process.returncode}; the end of {log}:", file=sys.stderr
        )
        print("\n".join("    " + line for line in tail), file=sys.stderr)
    done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    print(f"study {study.study_name!r}: {done} of {target} trials finished", flush=True)
    if done >= target:
        return 0
    return 1 if failed else 0  # short of the target without a failure: the timeout


def resolve_study(args: argparse.Namespace) -> tuple[str, str]:
    name = args.study
    if name is None:
        if args.storage and is_url(args.storage):
            names = optuna.get_all_study_names(storage=args.storage)
            if len(names) != 1:
                raise StudyError(f"{args.storage} holds studies {names}: pass --study NAME")
            name = names[0]
        else:
            name = latest_study()
    return name, study_location(name, args.storage)


def report(args: argparse.Namespace) -> int:
    from hw3tools.studies import open_storage

    from hw3sweep.report import write_report

    name, location = resolve_study(args)
    study = optuna.load_study(study_name=name, storage=open_storage(location))
    folder = None
    if not args.no_test:
        try:
            folder = corpus_folder(args)
        except DataError as exc:
            print(f"note: no data for the test evaluation ({exc})", file=sys.stderr)
    write_report(study, location, out=Path(args.out) if args.out else None, data_folder=folder,
                 evaluate_test=not args.no_test)  # fmt: skip
    return 0


def apply(args: argparse.Namespace) -> int:
    from hw3tools.studies import open_storage

    from hw3sweep.apply import apply_trial
    from hw3sweep.report import chosen_trial

    name, location = resolve_study(args)
    study = optuna.load_study(study_name=name, storage=open_storage(location))
    trial = study.get_trials(deepcopy=False)[args.trial] if args.trial is not None else chosen_trial(study)
    if trial is None:
        raise StudyError(f"study {name!r} has no complete trial to apply")
    apply_trial(Path(args.config), trial)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.report:
            return report(args)
        if args.apply:
            return apply(args)
        return run(args)
    except (StudyError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
