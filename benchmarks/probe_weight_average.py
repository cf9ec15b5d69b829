"""Quality probe: would an exponential moving average of the weights (EMA) beat the trained weights themselves?

    python benchmarks/probe_weight_average.py --data-dir DIR [--batches N] [--epochs E] [--decays D ...]
        [--threads T] [--seed S] [--out FILE]

Trains the full profile exactly as
``python -m hw3tools.train --profile full --epochs E --set max_train_batches=N adam_beta2=0.98 weight_decay=0.1``
does (the 3,000-step proxy of the README's "Training speed and quality" by default) and keeps, next to the model, one
EMA copy per decay (``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``, updated
after every optimizer step). After each epoch it prints the validation perplexity of the model and of every
average; at the end the test perplexity of the best model (what ``python -m hw3tools.train`` reports) and of each average at
its best epoch. The model's own figures are the proxy's control: they must equal the recorded run's.
Averaging is a change of the training procedure only (the model and its code stay the assignment's).
Not a hyper-parameter of ``hw3`` (so not something a study can search): its recorded run lives in the
``history`` study (``benchmarks/studies/history.journal``, the trials whose ``variant`` names the EMA).
"""

import argparse
import copy
import json
import math
import os
import platform
import time

import torch
from hw3.data import load_splits
from hw3.download import wikitext2_dir
from hw3.hparams import profile_defaults
from hw3.train import autocast_dtype, build_model, evaluate, fit, resolve_device, set_seed
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HW3_DATA_DIR"))
    parser.add_argument("--batches", type=int, default=1000, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--decays", type=float, nargs="+", default=[0.998, 0.9995])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=211)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if any(not 0.0 < d < 1.0 for d in args.decays):
        parser.error("--decays must lie in (0, 1)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device()
    folder = wikitext2_dir(data_dir=args.data_dir)
    # adam_beta2, weight_decay: the defaults when the recorded figures were measured, so the control still
    # reproduces them
    hp = profile_defaults("full").replace(
        epochs=args.epochs, max_train_batches=args.batches, seed=args.seed, adam_beta2=0.98, weight_decay=0.1
    )
    vocab, train_data, val_data, test_data = load_splits(folder, hp.batch_size, hp.eval_batch_size, device)
    amp_dtype = autocast_dtype(device, hp.precision)

    set_seed(hp.seed)
    model = build_model(len(vocab), hp).to(device)
    # made before training and updated outside the random streams: the model's run is the plain proxy's
    averages = {
        d: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True) for d in args.decays
    }

    def update_averages(optimizer, args_, kwargs_) -> None:
        for average in averages.values():
            average.update_parameters(model)

    handle = register_optimizer_step_post_hook(update_averages)
    rows: list[dict] = []
    best = {d: (math.inf, None, 0) for d in args.decays}  # val loss, weights, epoch

    def on_epoch_end(result) -> None:
        row = dict(result.history[-1])
        for d, average in averages.items():
            loss = evaluate(average.module, val_data, hp.bptt, None, amp_dtype, hp.max_eval_batches)
            row[f"ema_{d:g}_val_ppl"] = math.exp(loss)
            if loss < best[d][0]:
                best[d] = (loss, copy.deepcopy(average.module), row["epoch"])
        rows.append(row)
        figures = ", ".join(f"EMA {d:g} {row[f'ema_{d:g}_val_ppl']:.1f}" for d in args.decays)
        print(f"== epoch {row['epoch']}: valid ppl model {row['val_ppl']:.1f}, {figures}", flush=True)

    start = time.time()
    try:
        result = fit(model, train_data, val_data, hp, progress=False, on_epoch_end=on_epoch_end)
    finally:
        handle.remove()
    report = {
        "command": "python benchmarks/probe_weight_average.py "
        f"--batches {args.batches} --epochs {args.epochs} --decays {' '.join(f'{d:g}' for d in args.decays)} "
        f"--seed {args.seed}",
        "machine": f"{os.cpu_count()} cores {platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "device": str(device),
        "torch_version": torch.__version__,
        "hparams": hp.to_dict(),
        "epochs": rows,
        "seconds": time.time() - start,
    }
    test = evaluate(result.best_model, test_data, hp.bptt, None, amp_dtype, hp.max_eval_batches)
    report["test_ppl_model"] = math.exp(test)
    print(f"test ppl: model {math.exp(test):.2f} (best epoch {result.best_epoch})", flush=True)
    for d, (_, weights, epoch) in best.items():
        loss = evaluate(weights, test_data, hp.bptt, None, amp_dtype, hp.max_eval_batches)
        report[f"test_ppl_ema_{d:g}"] = math.exp(loss)
        print(
            f"test ppl: EMA {d:g} {math.exp(loss):.2f} (best epoch {epoch}; "
            f"EMA minus model: {loss - test:+.4f} nats)",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
