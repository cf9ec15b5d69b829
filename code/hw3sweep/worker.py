"""One worker process of a study: ask for a trial, train it, tell the result; until the study has
the number of finished trials it was asked for.

``python -m hw3sweep.worker ...`` is started by the launcher (:mod:`hw3sweep.cli`), K times per
machine; a worker on another machine is just the same command with the same ``--storage``.

A trial trains with the functions the notebook uses (``hw3.data.load_splits``,
``hw3.train.build_model`` and ``fit``) and reports the validation perplexity after every epoch
(``trial.report``) so the pruner can stop it; its value is the best validation perplexity. In a
time-aware study (:mod:`hw3sweep.objective`) it also searches the run's length, is not pruned, and
its values are the best validation perplexity and the training batches the run took. It records its complete hyper-parameters, the per-epoch history, the device, precision, threads,
torch version, git commit, data fingerprint and worker. The test split is never evaluated here.

Each trial runs through ``Study.optimize(n_trials=1)``: Optuna asks for it, keeps its heartbeat and
tells its end. The count stays exact: counting the trials and asking for the next one happen under
the study's budget lock, which the objective releases as its first step. A trial interrupted in
this process (Ctrl-C, SIGTERM) ends FAIL and is enqueued again once, as a dead worker's trial is.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from hw3.data import load_splits, summary
from hw3.files import write_atomic
from hw3.hparams import FIXED, HParams
from hw3.metrics import perplexity
from hw3.recipe import TrainingDiverged
from hw3.train import build_model, count_batches, fit, resolve_device, resolved_run, set_seed
from hw3tools.repo import git_state
from hw3tools.studies import HPARAMS_ATTR, SWEEPS_DIR
from optuna.trial import FrozenTrial, Trial, TrialState

from hw3sweep.budgets import get_budget
from hw3sweep.objective import BATCHES_ATTR, SEED_ATTR, baseline_params, configuration_key, weights_to_keep
from hw3sweep.space import suggest_hparams
from hw3sweep.storage import (
    DEFAULT_HEARTBEAT_S,
    budget_lock,
    fail_stale_trials,
    open_sweep_storage,
    retry_callback,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_S = 2.0  # how often a worker with nothing to do looks again


def weights_dir(study: str) -> Path:
    """Where this machine keeps the best trial's weights (for the report's one test evaluation)."""
    return SWEEPS_DIR / study / "weights"


def weights_path(study: str, number: int) -> Path:
    return weights_dir(study) / f"trial-{number}.pt"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (Optuna's MedianPruner), ``halving`` (SuccessiveHalvingPruner) or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose median, halving or none")


def worker_seed(seed: int, index: int) -> int:
    """The sampler's seed of worker ``index`` on this machine: distinct across workers and machines
    (same seeds would sample the same first configurations), the same on a rerun of one machine."""
    key = f"{seed}:{socket.gethostname()}:{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


def git_commit() -> dict[str, Any]:
    """The commit of the code a trial ran."""
    return git_state()


class Trainer:
    """The data, loaded once per worker, and one trial's training."""

    def __init__(self, corpus: Path, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.corpus = corpus
        # the test split is loaded with the others but never used while tuning
        self.vocab, self.train_data, self.val_data, _ = load_splits(
            corpus, FIXED["batch_size"], FIXED["eval_batch_size"], self.device
        )
        self.data = summary(corpus)
        self.git = git_commit()

    def run(self, trial: Trial, hp: HParams, study: str, time_aware: bool = False) -> float | list[float]:
        """Train ``hp`` for ``trial``; the best validation perplexity, and in a time-aware study
        the training batches too. Raises TrialPruned (a pruned or diverged run)."""
        trial.set_user_attr("run", resolved_run(self.device, hp))
        trial.set_user_attr("data", self.data)
        trial.set_user_attr("git", self.git)
        set_seed(hp.seed)
        model = build_model(len(self.vocab), hp).to(self.device)

        def report(result: Any) -> None:
            row = result.history[-1]
            trial.set_user_attr("history", result.history)  # the curve survives a kill
            if not math.isfinite(row["val_ppl"]):  # a finite loss whose exp() no float holds
                raise TrainingDiverged(f"validation loss {row['val_loss']:.4g} after epoch {row['epoch']}")
            if time_aware:  # Optuna prunes single-objective trials only
                return
            trial.report(row["val_ppl"], step=row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation perplexity {row['val_ppl']:.1f} after epoch {row['epoch']}"
                )

        try:
            result = fit(model, self.train_data, self.val_data, hp, progress=False, on_epoch_end=report)
        except TrainingDiverged as exc:
            # a configuration whose loss became NaN, or whose validation perplexity is past a
            # float's range: as bad as a configuration gets
            trial.set_user_attr("diverged", f"{type(exc).__name__}: {exc}")
            raise optuna.TrialPruned(f"diverged ({exc})") from None
        trial.set_user_attr("train_seconds", result.train_seconds)
        if result.interrupted:
            raise KeyboardInterrupt
        trial.set_user_attr("best_epoch", result.best_epoch)
        value = perplexity(result.best_val_loss)  # finite: every epoch's was checked above
        batches = count_batches(self.train_data, hp.bptt, hp.max_train_batches) * len(result.history)
        trial.set_user_attr(BATCHES_ATTR, batches)
        values = [value, float(batches)] if time_aware else [value]
        keep_if_best(trial.study, trial.number, values, result.best_model, study)
        return values if time_aware else value


def keep_if_best(
    study: optuna.Study, number: int, values: list[float], model: torch.nn.Module, name: str
) -> None:
    """Save the weights of a trial that no finished one beats (in a two-objective study: that none
    dominates, so the Pareto front keeps its weights), or that repeats such a configuration with
    another seed; drop this machine's weights of every other finished trial
    (:func:`weights_to_keep`). A trial still running elsewhere keeps its weights: it has saved them
    but not yet told its value, so nothing here can judge it, and its own worker decides."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    done = {n: t.values for n, t in trials.items() if t.state == TrialState.COMPLETE and n != number}
    scores = {**done, number: values}
    kept = weights_to_keep(scores, {n: configuration_key(trials[n]) for n in scores})
    running = {n for n, t in trials.items() if t.state == TrialState.RUNNING and n != number}
    folder = weights_dir(name)
    if number in kept:
        write_atomic(weights_path(name, number), lambda f: torch.save(model.state_dict(), f))
    for other in folder.glob("trial-*.pt"):
        if (n := int(other.stem.removeprefix("trial-"))) not in kept and n not in running:
            other.unlink(missing_ok=True)


def count(trials: list[FrozenTrial], states: tuple[TrialState, ...]) -> int:
    return sum(t.state in states for t in trials)


def has_slot(study: optuna.Study, target: int) -> bool | None:
    """Whether a trial may start now: True (a waiting one, or fewer than ``target`` finished and
    running), None to wait (the remaining slots are running elsewhere), False when the study has
    ``target`` finished trials. Asked under the budget lock, which the trial releases once asked."""
    trials = study.get_trials(deepcopy=False)
    done = count(trials, FINISHED)
    if done >= target:
        return False
    waiting = count(trials, (TrialState.WAITING,))
    if waiting or done + count(trials, (TrialState.RUNNING,)) < target:
        return True
    return None


def run_one(
    study: optuna.Study, trainer: Trainer, args: argparse.Namespace, asked: Callable[[], None] = lambda: None
) -> None:
    """Run one trial through ``Study.optimize`` (which asks for it, keeps its heartbeat and tells its
    end): COMPLETE with the best validation perplexity, PRUNED, or FAIL (an error; an interruption,
    enqueued again once). ``asked`` is called once the trial exists (it releases the budget lock)."""
    budget = get_budget(args.budget)
    fixed = json.loads(args.fixed)
    numbers: list[int] = []

    def objective(trial: Trial) -> float | list[float]:
        numbers.append(trial.number)
        asked()
        hp = suggest_hparams(trial, budget.base(fixed), fixed)
        if args.time_aware and "epochs" not in fixed:  # the run's length is searched, up to the baseline's
            longest = (baseline_params(study) or {}).get("epochs", budget.base(fixed).epochs)
            hp = hp.replace(epochs=trial.suggest_int("epochs", 1, longest))
        if SEED_ATTR in trial.user_attrs:  # a configuration enqueued again with another seed
            hp = hp.replace(seed=trial.user_attrs[SEED_ATTR])
        trial.set_user_attr(HPARAMS_ATTR, hp.to_dict())
        trial.set_user_attr("profile", budget.profile)
        trial.set_user_attr("budget", budget.name)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        print(f"== trial {trial.number}: {trial.params}", flush=True)
        try:
            value = trainer.run(trial, hp, study.study_name, args.time_aware)
        except KeyboardInterrupt:
            print(f"== trial {trial.number} interrupted: FAIL, enqueued again", flush=True)
            trial.set_user_attr("interrupted", True)
            raise
        if value is None:
            raise optuna.TrialPruned()
        ppl, *batches = value if isinstance(value, list) else [value]
        shown = f", {int(batches[0])} training batches" if batches else ""
        print(f"== trial {trial.number}: validation perplexity {ppl:.2f}{shown}", flush=True)
        return value

    try:
        study.optimize(objective, n_trials=1, catch=())
    except KeyboardInterrupt:
        if numbers:  # optimize told FAIL; a dead worker's trial would be retried: so is this one
            retry_callback()(study, study.get_trials(deepcopy=False)[numbers[0]])
        raise


def work(args: argparse.Namespace) -> int:
    storage = open_sweep_storage(args.storage, args.heartbeat)
    sampler = optuna.samplers.TPESampler(seed=worker_seed(args.seed, args.index), constant_liar=True)
    study = optuna.load_study(
        study_name=args.study, storage=storage, sampler=sampler, pruner=make_pruner(args.pruner)
    )
    trainer = Trainer(Path(args.corpus), args.device, args.threads)
    deadline = time.time() + args.timeout if args.timeout else math.inf
    while True:
        if time.time() >= deadline:
            print("== timeout: no new trial", flush=True)
            return 0
        with contextlib.ExitStack() as budget:
            budget.enter_context(budget_lock(args.storage, study.study_name))
            fail_stale_trials(study)  # a dead worker's trial frees its slot (and is enqueued again)
            slot = has_slot(study, args.trials)
            if slot is False:
                return 0
            if slot:
                run_one(study, trainer, args, asked=budget.close)
                continue
        time.sleep(POLL_S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hw3sweep.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True, help="journal path or database URL")
    parser.add_argument("--trials", type=int, required=True, help="the study's target of finished trials")
    parser.add_argument("--budget", required=True)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--fixed", default="{}", help="JSON object of fixed hyper-parameters")
    parser.add_argument("--time-aware", action="store_true", help="two objectives: perplexity and batches")
    parser.add_argument("--corpus", required=True, help="folder with wiki.{train,valid,test}.tokens")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT_S)
    parser.add_argument("--seed", type=int, default=211, help="base of the sampler's seed")
    parser.add_argument("--index", type=int, default=0, help="this worker's index on its machine")
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # `kill` stops like Ctrl-C
    # subnormal floats as zero, as the notebook trains (docs/speed.md): before torch's threads start
    torch.set_flush_denormal(True)
    try:
        return work(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
