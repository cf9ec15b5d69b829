"""``python -m hw3tools.train``: train the language model outside the notebook.

The same functions as the notebook, in the same order: load the data, build the given model,
``fit``, test the best model, generate three sentences, and write the run's record with
``hw3.metrics.write_metrics``. The output folder gets ``metrics.json``, ``best_model.pt`` (the best
weights), ``loss_ppl.png`` (the curves) and, after every epoch, ``checkpoint.pt``: after Ctrl-C,
``kill`` or a lost session, the same command with ``--resume`` continues from the last finished
epoch exactly as if it had not stopped.

``--from-study STUDY --trial N [--storage URL]`` re-runs a trial of a tuning study exactly: its
complete recorded hyper-parameters replace the profile's (``--epochs`` and ``--set`` still apply on
top); where studies are stored is :mod:`hw3tools.studies`.
"""

from __future__ import annotations

import argparse
import ast
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hw3.data import load_splits, summary
from hw3.download import DataError, wikitext2_dir
from hw3.files import write_atomic
from hw3.generate import generate_sentences
from hw3.hparams import PROFILES, HParams, profile_defaults
from hw3.metrics import METRICS_NAME, metrics_record, perplexity, write_metrics
from hw3.plots import plot_history
from hw3.train import (
    FitResult,
    autocast_dtype,
    build_model,
    checkpoint_state,
    evaluate,
    fit,
    resolve_device,
    resolved_run,
    set_seed,
)

from hw3tools.studies import StudyError, load_trial, trial_hparams

BEST_MODEL_NAME = "best_model.pt"
CHECKPOINT_NAME = "checkpoint.pt"
CURVES_NAME = "loss_ppl.png"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hw3tools.train", description="Train the WikiText-2 Transformer LM."
    )
    parser.add_argument("--profile", choices=PROFILES, help="quick (default) or full")
    parser.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    parser.add_argument(
        "--data-dir", help="folder with wiki.{train,valid,test}.tokens (default: cache/download)"
    )
    parser.add_argument("--out", default="build/train", help="output folder (default: build/train)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",  # repeating --set adds to the overrides
        default=[],
        metavar="NAME=VALUE",
        help="override hyper-parameters (repeatable): the fields of hw3.hparams.HParams",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint.pt is in --out after its last finished epoch",
    )
    study = parser.add_argument_group("re-run a trial of a tuning study (hw3tools.studies)")
    study.add_argument("--from-study", metavar="STUDY", help="the study's name, e.g. history")
    study.add_argument("--trial", type=int, metavar="N", help="the trial's number in the study")
    study.add_argument(
        "--storage",
        metavar="URL_OR_PATH",
        help="the study's storage (default: its journal under benchmarks/studies or build/sweeps)",
    )
    return parser


def parse_override(item: str) -> tuple[str, object]:
    """``name=value``, the value read as a Python literal when it is one (``lr=5e-3``,
    ``norm_first=True``); ``true``/``false`` in any case are booleans, as in ``submission.toml``."""
    name, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"override {item!r} must look like NAME=VALUE")
    if text.strip().lower() in ("true", "false"):
        return name, text.strip().lower() == "true"
    try:
        return name, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return name, text


def run_settings(args: argparse.Namespace) -> tuple[str, HParams]:
    """The run's profile label and hyper-parameters: the profile's (or, with ``--from-study``, the
    trial's complete recorded ones) with ``--epochs`` and ``--set`` applied (ValueError if invalid
    or if the trial cannot be found)."""
    overrides = dict(parse_override(item) for item in args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.from_study is None:
        if args.trial is not None or args.storage is not None:
            raise ValueError("--trial and --storage go with --from-study STUDY")
        profile = args.profile or "quick"
        return profile, HParams.from_dict({**profile_defaults(profile).to_dict(), **overrides})
    if args.trial is None:
        raise ValueError("--from-study needs --trial N (the trial's number in the study)")
    if args.profile is not None:
        raise ValueError("--from-study takes the trial's hyper-parameters: leave out --profile")
    try:
        trial = load_trial(args.from_study, args.trial, args.storage)
        base = trial_hparams(trial).to_dict()
    except StudyError as exc:
        raise ValueError(str(exc)) from None
    print(f"trial {args.trial} of study {args.from_study!r}: its recorded hyper-parameters")
    profile = str(trial.user_attrs.get("profile", "full"))
    return profile, HParams.from_dict({**base, **overrides})


def load_checkpoint(path: Path, hp: HParams, device: torch.device) -> dict[str, Any]:
    """The checkpoint at ``path`` for ``fit(..., resume=...)``; ValueError if it is missing or was
    trained with other hyper-parameters (a field it lacks counts as different)."""
    if not path.exists():
        raise ValueError(f"--resume: no checkpoint at {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    saved, current = state.pop("hparams"), hp.to_dict()
    differ = sorted(k for k in saved.keys() | current.keys() if saved.get(k, "<absent>") != current.get(k))
    if differ:
        details = ", ".join(
            f"{k}: {saved.get(k, '<absent>')!r} there, {current.get(k)!r} now" for k in differ
        )
        raise ValueError(
            f"--resume: {path} was trained with other hyper-parameters ({details}); "
            "pass the same --profile/--epochs/--set as that run"
        )
    return state


def save_torch(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


class RunRecorder:
    """Writes the run's record and best weights after every epoch and at the end."""

    def __init__(self, out: Path, base: dict[str, Any], started: float) -> None:
        self.out, self.base, self.started = out, base, started

    def save(self, result: FitResult, **finished: Any) -> None:
        record = metrics_record(
            **self.base, fit_result=result, total_seconds=time.time() - self.started, **finished
        )
        write_metrics(self.out, record)
        if result.best_model is not None:
            save_torch(self.out / BEST_MODEL_NAME, result.best_model.state_dict())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # refuse bad hyper-parameters and a wrong --resume before any data is loaded
        profile, hp = run_settings(args)
        folder = wikitext2_dir(data_dir=args.data_dir)
        # subnormal floats as zero, as the notebook trains (docs/speed.md): before torch's threads start
        torch.set_flush_denormal(True)
        if args.threads:
            torch.set_num_threads(args.threads)
        out, device = Path(args.out), resolve_device(args.device)
        out.mkdir(parents=True, exist_ok=True)
        resume = load_checkpoint(out / CHECKPOINT_NAME, hp, device) if args.resume else None
    except (ValueError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.time()
    vocab, train_data, val_data, test_data = load_splits(folder, hp.batch_size, hp.eval_batch_size, device)
    run = resolved_run(device, hp)
    print(hp.describe(), flush=True)
    print(f"running on {run['device']} ({run['precision']}, {run['threads']} threads)", flush=True)
    if resume is not None:
        print(f"resuming after epoch {resume['epoch']} of {hp.epochs}", flush=True)
    set_seed(hp.seed)
    model = build_model(len(vocab), hp).to(device)
    base = {"profile": profile, "hparams": hp.to_dict(), "run": run, "data": summary(folder)}
    recorder = RunRecorder(out, base, started)
    result = train_saving_every_epoch(model, train_data, val_data, hp, recorder, resume)
    if result.best_model is None:
        print("no epoch finished; nothing to evaluate", file=sys.stderr)
        return 1
    try:
        test_loss, sentences = test_and_sample(result.best_model, test_data, vocab, hp, device)
    except KeyboardInterrupt:  # a (second) Ctrl-C or `kill` after training: what is saved stays
        print(
            f"Interrupted after training: the history ({out / METRICS_NAME}) and best weights "
            f"({out / BEST_MODEL_NAME}) are saved, without the test pass.",
            file=sys.stderr,
        )
        return 130
    figure = out / CURVES_NAME
    plot_history(result.history, test_loss=test_loss, best_epoch=result.best_epoch, path=figure)
    recorder.save(result, test_loss=test_loss, sentences=sentences, figures=[CURVES_NAME])
    print(f"history: {out / METRICS_NAME}, best weights: {out / BEST_MODEL_NAME}, curve: {figure}")
    return 130 if result.interrupted else 0


def train_saving_every_epoch(
    model: torch.nn.Module,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    hp: HParams,
    recorder: RunRecorder,
    resume: dict[str, Any] | None,
) -> FitResult:
    """``fit``, saving the record, the best weights and the checkpoint ``--resume`` continues from
    after every epoch; ``kill PID`` (SIGTERM) stops like Ctrl-C, keeping the best model so far."""
    out = recorder.out

    def save_epoch(result: FitResult) -> None:
        recorder.save(result)
        save_torch(out / CHECKPOINT_NAME, {"hparams": hp.to_dict(), **checkpoint_state(model, result)})

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    result = fit(
        model,
        train_data,
        val_data,
        hp,
        progress=sys.stderr.isatty(),
        on_epoch_end=save_epoch,
        resume=resume,
    )
    recorder.save(result)
    return result


def test_and_sample(
    best_model: torch.nn.Module,
    test_data: torch.Tensor,
    vocab: Any,
    hp: HParams,
    device: torch.device,
) -> tuple[float, list[str]]:
    """The best model's test loss (printed as the assignment's end-of-training line) and its three
    20-word sentences (printed)."""
    amp_dtype = autocast_dtype(device, hp.precision)
    test_loss = evaluate(best_model, test_data, hp.bptt, None, amp_dtype, hp.max_eval_batches)
    print("=" * 89)
    print(f"| End of training | test loss {test_loss:5.2f} | test ppl {perplexity(test_loss):8.2f}")
    print("=" * 89)
    sentences = generate_sentences(best_model, vocab, n_sentences=3, nwords=20, seed=hp.seed)
    for sentence in sentences:
        print(sentence)
    return test_loss, sentences


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
