"""The decoder's product in one chunk of a batch's 700 rows against two of 350, inside the notebook's
train(), models taking turns in one process.

    python benchmarks/step_variants.py [--rounds R] [--block B] [--data-dir DIR] [--variant NAME]

Each variant trains its own copy of the full profile's model (same initial weights, constant learning
rate) on the same batches of WikiText-2, B batches a turn, the variants one after another, R turns (the
first is a warm-up): a machine that slows down for a while slows all alike. Prints the median ms/batch of
the turns of each variant:

- "as trained": train() as the notebook runs it, the decoder's product and softmax over a batch's 700
  rows at once;
- "decoder in chunks of 350": over two chunks of 350 rows, as before.

`--variant NAME` times only that one: run each in its own process, in turns, to keep one variant's
memory out of the other's.
"""

import argparse
import copy
import statistics
import sys
import time
import warnings

import hw3.fused_loss as fused_loss
import torch
from hw3.data import load_splits
from hw3.download import wikitext2_dir
from hw3.hparams import profile_defaults
from hw3.train import autocast_dtype, build_model, make_optimizer, make_scheduler, train
from torch import nn

VARIANTS = {"as trained": 700, "decoder in chunks of 350": 350}  # name -> chunk_rows


def use_chunk_rows(chunk_rows: int) -> None:
    """Make the chunk size the default that train()'s decoder_cross_entropy calls with."""
    fused_loss.linear_cross_entropy.__defaults__ = (torch.float32, chunk_rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="turns of each variant (1 warm-up)")
    parser.add_argument("--block", type=int, default=5, help="batches a turn")
    parser.add_argument("--data-dir", help="folder with wiki.{train,valid,test}.tokens")
    parser.add_argument(
        "--variant", choices=list(VARIANTS), action="append", help="time only these (repeatable)"
    )
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variant or VARIANTS}
    warnings.filterwarnings("ignore", message=".*nested_tensor")
    torch.set_flush_denormal(True)  # as the notebook trains, before torch's threads start
    hp = profile_defaults("full").replace(scheduler="constant", warmup_batches=0)
    folder = wikitext2_dir(data_dir=args.data_dir)
    vocab, train_data, _, _ = load_splits(folder, hp.batch_size, hp.eval_batch_size)
    device = torch.device("cpu")
    amp_dtype = autocast_dtype(device, hp.precision)
    torch.manual_seed(hp.seed)
    initial = build_model(len(vocab), hp)
    runs = {}
    for name in variants:
        model = copy.deepcopy(initial)
        optimizer = make_optimizer(model, hp)
        runs[name] = (model, optimizer, make_scheduler(optimizer, hp, 10**9))
    criterion = nn.CrossEntropyLoss()
    times: dict[str, list[float]] = {name: [] for name in variants}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.rounds - 1} timed turns of "
          f"{args.block} batches each")  # fmt: skip
    for turn in range(args.rounds):
        rows = train_data[turn * args.block * hp.bptt : ((turn + 1) * args.block) * hp.bptt + 1]
        for name, chunk_rows in variants.items():
            use_chunk_rows(chunk_rows)
            model, optimizer, scheduler = runs[name]
            torch.manual_seed(hp.seed + turn)
            start = time.perf_counter()
            train(model, hp.bptt, rows, criterion, len(vocab), optimizer, scheduler, 1, 10**9,
                  clip=hp.clip, amp_dtype=amp_dtype, progress=False)  # fmt: skip
            if turn > 0:
                times[name].append((time.perf_counter() - start) * 1000 / args.block)
    use_chunk_rows(VARIANTS["as trained"])
    for name, values in times.items():
        print(f"{name:26s} {statistics.median(values):6.1f} ms/batch (median; turns "
              f"{min(values):.0f}-{max(values):.0f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
