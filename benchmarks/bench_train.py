"""Training speed: the assignment's (seed) loop against the notebook's train(), same model and data.

    python benchmarks/bench_train.py [--batches N] [--block B] [--data-dir DIR] [--threads T]
        [--dropout P] [--precision auto|fp32|bf16]

"ours" is hw3.train.train, the function the notebook's Task 4 shows and trains with; "seed" is the
assignment's given train() (hw3.reference.given_train). Both loops start from the same initial weights and train on the same batches of WikiText-2 (bptt 35,
batch 20) with the full profile's model and optimizer at a constant learning rate. They run in
alternating blocks of B batches, each block re-seeded identically for both, so machine noise hits both
alike. After one warm-up block each, N batches of each are timed. Prints ms/batch and tokens/s of each and
the speed ratio, then the loss checks, from untimed extra runs:

- the maths: ours with torch's own dropout in fp32 ("ours=32"), which then draws the same masks as the seed
  loop and rounds as it does, must match it: within 0.5% on the first block, and afterwards as close as
  the seed loop is to itself with other dropout masks and another thread count ("seed'": every sum in
  another order, so fp32 rounds otherwise, as in another run) or within 0.05 nats;
- the precision: the same in bf16 autocast where ours uses it ("ours="), within 0.5% of the seed loop
  on the first block (same weights, same masks: only the rounding differs); afterwards bf16 and fp32
  trajectories drift apart early in training by more than fp32's own noise, so this is printed, not judged;
- the dropout: ours (cheaper masks, same distribution, other masks) against "ours=": over the second half
  of the blocks the signed mean difference must stay within that noise level (a biased mask would shift
  the loss one way; the noise of other masks averages out). The full profile has no dropout, so
  this check needs ``--dropout P`` (the seed loop and ours then both train with it).
"""

import argparse
import copy
import math
import os
import platform
import statistics
import sys
import time
import warnings

import torch
from hw3.data import load_splits
from hw3.download import wikitext2_dir
from hw3.hparams import profile_defaults
from hw3.reference import given_train
from hw3.train import (
    autocast_dtype,
    build_model,
    make_optimizer,
    make_scheduler,
    optimizer_kwargs,
    parameter_groups,
    train,
)
from torch import nn

# Loss equivalence. The first block starts from identical weights with identical dropout masks, so only
# rounding separates the two losses (relative tolerance). Afterwards the trajectories drift apart (any
# rounding difference grows), so later blocks are compared with the run-to-run noise of the seed loop itself:
# the same seed loop with other dropout masks and another thread count ("seed'"), untimed (without
# dropout, the thread count alone). Ours must stay as close to the seed loop as
# that, or within MEAN_TOLERANCE nats, whichever is larger.
FIRST_BLOCK_RELATIVE_TOLERANCE = 0.005
MEAN_TOLERANCE = 0.05
NOISE = "seed'"  # the seed loop again, with other dropout masks and another thread count
EXACT = "ours="  # our loop with torch's dropout: the seed loop's masks
FP32 = "ours=32"  # the same in fp32: the seed loop's masks and precision, so only our maths differ
# (run only where ours trains in bf16: in fp32 it is "ours=" itself)


def seed_train_block(model, optimizer, train_data, start_batch, n_batches, bptt, ntokens) -> float:
    """The assignment's given train() (fp32, model(data, src_mask), loss.item() every batch) on n_batches
    batches from start_batch; returns their mean loss."""
    rows = train_data[start_batch * bptt : (start_batch + n_batches) * bptt + 1]
    recorder = LossRecorder()
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    given_train(model, bptt, rows, recorder, ntokens, optimizer, constant, 1, log_interval=10**9)
    return sum(recorder.losses) / len(recorder.losses)


class LossRecorder(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss that keeps every loss it computed (the given loop reads them with .item())."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def forward(self, input, target):
        loss = super().forward(input, target)
        self.losses.append(loss.item())
        return loss


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's word for it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per loop (after warm-up)")
    parser.add_argument("--block", type=int, default=5, help="batches per alternating block")
    parser.add_argument("--data-dir", help="folder with wiki.{train,valid,test}.tokens")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--dropout", type=float, help="instead of the full profile's (0): checks the masks")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="instead of the full profile's")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    torch.set_flush_denormal(True)  # as the notebook trains, before torch's threads start
    if args.threads:
        torch.set_num_threads(args.threads)

    hp = profile_defaults("full").replace(scheduler="constant", warmup_batches=0)
    if args.dropout is not None:
        hp = hp.replace(dropout=args.dropout)
    if args.precision:
        hp = hp.replace(precision=args.precision)
    device = torch.device("cpu")
    amp_dtype = autocast_dtype(device, hp.precision)
    folder = wikitext2_dir(data_dir=args.data_dir)
    vocab, train_data, _, _ = load_splits(folder, hp.batch_size, hp.eval_batch_size)
    ntokens = len(vocab)

    torch.manual_seed(hp.seed)
    seed_model = build_model(ntokens, hp)
    maths = FP32 if amp_dtype is not None else EXACT  # the loop whose maths are checked against seed's
    ours_loops = ("ours", EXACT) + ((FP32,) if maths == FP32 else ())
    models = {name: copy.deepcopy(seed_model) for name in (NOISE, *ours_loops)}
    models["seed"] = seed_model
    optimizers = {
        name: getattr(torch.optim, hp.optimizer)(parameter_groups(models[name], hp), **optimizer_kwargs(hp))
        for name in ("seed", NOISE)
    }
    for name in ours_loops:
        optimizers[name] = make_optimizer(models[name], hp)
    schedulers = {name: make_scheduler(optimizers[name], hp, batches_per_epoch=10**9) for name in ours_loops}

    criterion = nn.CrossEntropyLoss()
    cpu = f"{platform.processor() or platform.machine()}, {torch.backends.cpu.get_cpu_capability()}"
    print(f"machine: {cpu_name()} ({cpu}), {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"ours: hw3.train.train, autocast {amp_dtype}, decoder_cross_entropy, clipping folded into fused "
          "Adam, dropout masks from PCG64, on a CPU in bf16 the attention by torch's math kernel (fp32); "
          "seed: the assignment's train()")  # fmt: skip
    print(f"model: emsize {hp.emsize}, nhid {hp.nhid}, nlayers {hp.nlayers}, nhead {hp.nhead}, "
          f"dropout {hp.dropout}, {hp.optimizer} lr {hp.lr:g}; batch {hp.batch_size} x bptt {hp.bptt}")  # fmt: skip
    n_blocks = 1 + math.ceil(args.batches / args.block)  # the first block of each is the warm-up
    times = {"seed": 0.0, "ours": 0.0}
    cpu_times = {"seed": 0.0, "ours": 0.0}
    block_ratios = []  # seed time / our time per timed block: its median shrugs off a hiccup of the machine
    block_losses = {name: [] for name in ("seed", NOISE, *ours_loops)}

    def run(name: str, start: int, seed: int) -> tuple[float, float]:
        """Train block ``start`` with loop ``name``; returns its (wall, CPU) seconds."""
        torch.manual_seed(seed)
        t0, c0 = time.perf_counter(), time.process_time()
        if name in ("seed", NOISE):
            threads = torch.get_num_threads()
            if name == NOISE:  # another order of every sum: fp32 rounds otherwise, as in another run
                torch.set_num_threads(threads - 1 if threads > 1 else 2)
            try:
                mean_loss = seed_train_block(
                    models[name], optimizers[name], train_data, start, args.block, hp.bptt, ntokens
                )
            finally:
                torch.set_num_threads(threads)
        else:
            rows = train_data[start * hp.bptt : (start + args.block) * hp.bptt + 1]
            mean_loss = train(models[name], hp.bptt, rows, criterion, ntokens, optimizers[name], schedulers[name],
                              1, 10**9, clip=hp.clip, amp_dtype=None if name == FP32 else amp_dtype, progress=False,
                              cheap_dropout=name == "ours")  # fmt: skip
        seconds = time.perf_counter() - t0, time.process_time() - c0
        block_losses[name].append(mean_loss)
        return seconds

    for block in range(n_blocks):
        start = block * args.block
        seed_seconds, seed_cpu = run("seed", start, hp.seed + block)
        our_seconds, our_cpu = run("ours", start, hp.seed + block)
        run(NOISE, start, hp.seed + 10**6 + block)  # other dropout masks, another thread count
        run(EXACT, start, hp.seed + block)  # the seed loop's masks
        if maths == FP32:
            run(FP32, start, hp.seed + block)  # the seed loop's masks and precision
        if block > 0:
            times["seed"] += seed_seconds
            times["ours"] += our_seconds
            block_ratios.append(seed_seconds / our_seconds)
            cpu_times["seed"] += seed_cpu
            cpu_times["ours"] += our_cpu
        print(f"block {block:2d}{' (warm-up)' if block == 0 else '          '}  "
              f"seed {seed_seconds * 1000 / args.block:7.1f} ms/batch  ours {our_seconds * 1000 / args.block:7.1f} "
              f"ms/batch  mean loss " + " ".join(f"{name} {block_losses[name][-1]:.4f}" for name in block_losses),
              flush=True)  # fmt: skip

    timed = (n_blocks - 1) * args.block
    tokens = timed * hp.batch_size * hp.bptt
    print("-" * 72)
    for name in ("seed", "ours"):
        print(f"{name:5s}: {times[name] * 1000 / timed:7.1f} ms/batch  {tokens / times[name]:8.0f} tokens/s  "
              f"({timed} batches of {hp.batch_size}x{hp.bptt})")  # fmt: skip
    ratio = times["seed"] / times["ours"]
    median_ratio = statistics.median(block_ratios)
    print(
        f"speed-up (tokens/s ours / seed): {ratio:.2f}x overall, {median_ratio:.2f}x median of the "
        f"{len(block_ratios)} blocks  (goal >= 3.4x)"
    )
    print(f"CPU time per batch: seed {cpu_times['seed'] * 1000 / timed:.1f} ms, ours {cpu_times['ours'] * 1000 / timed:.1f} "
          f"ms -> {cpu_times['seed'] / cpu_times['ours']:.2f}x  (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    losses = block_losses
    diffs = [abs(a - b) for a, b in zip(losses["seed"], losses[maths], strict=True)]
    noise = [abs(a - b) for a, b in zip(losses["seed"], losses[NOISE], strict=True)]
    mean_diff, mean_noise = sum(diffs) / len(diffs), sum(noise) / len(noise)
    first_ok = diffs[0] <= FIRST_BLOCK_RELATIVE_TOLERANCE * losses["seed"][0]
    maths_ok = first_ok and mean_diff <= max(MEAN_TOLERANCE, mean_noise)
    print(f"loss equivalence, the maths ({maths} vs seed, same dropout masks, both fp32): first block |diff| "
          f"{diffs[0]:.4f} nats = {diffs[0] / losses['seed'][0]:.2%} (tolerance {FIRST_BLOCK_RELATIVE_TOLERANCE:.1%}); "
          f"mean over {n_blocks} blocks |diff| {mean_diff:.4f} vs the seed loop's own noise |{NOISE} - seed| "
          f"{mean_noise:.4f} (tolerance max(noise, {MEAN_TOLERANCE})) -> {'OK' if maths_ok else 'FAILED'}")  # fmt: skip
    if amp_dtype is not None:
        drift = [abs(a - b) for a, b in zip(losses["seed"], losses[EXACT], strict=True)]
        precision_ok = drift[0] <= FIRST_BLOCK_RELATIVE_TOLERANCE * losses["seed"][0]
        maths_ok = maths_ok and precision_ok
        print(f"loss equivalence, the precision ({EXACT} in {str(amp_dtype).removeprefix('torch.')} autocast vs seed "
              f"in fp32, same masks): first block |diff| {drift[0]:.4f} nats = {drift[0] / losses['seed'][0]:.2%} "
              f"(tolerance {FIRST_BLOCK_RELATIVE_TOLERANCE:.1%}) -> {'OK' if precision_ok else 'FAILED'}; afterwards "
              f"the two roundings drift apart (mean |diff| {statistics.fmean(drift):.4f} over {n_blocks} blocks, "
              "most where the loss falls fastest), which the precision explains, not the maths")  # fmt: skip
    if not hp.dropout:  # no masks drawn: a check of them would pass on nothing
        print("loss equivalence, the dropout masks: none drawn at dropout 0; `--dropout 0.1` checks them")
        return 0 if maths_ok else 1
    late = range(n_blocks // 2, n_blocks)
    shift = statistics.fmean(losses["ours"][b] - losses[EXACT][b] for b in late)
    late_noise = statistics.fmean(noise[b] for b in late)
    dropout_ok = abs(shift) <= max(MEAN_TOLERANCE, late_noise)
    print(f"loss equivalence, the dropout masks (ours vs {EXACT}, blocks {late.start}-{late.stop - 1}): mean "
          f"signed diff {shift:+.4f} nats vs noise {late_noise:.4f} (tolerance max(noise, {MEAN_TOLERANCE})) "
          f"-> {'OK' if dropout_ok else 'FAILED'}")  # fmt: skip
    return 0 if maths_ok and dropout_ok else 1


if __name__ == "__main__":
    sys.exit(main())
