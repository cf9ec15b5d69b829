"""Late-run step time: a long run's steps slow down on subnormal floats, unless they count as zero.

    python benchmarks/late_steps.py [--batches N] [--window W] [--data-dir DIR]

Trains the full profile (its schedule, recipe and precision) with hw3.train.train for N batches, twice,
each in its own process from the same weights and seeds: once in torch's default floating-point mode,
once as the notebook trains (torch.set_flush_denormal(True) before torch starts its threads: subnormal
floats read and written as zero in every thread). Prints the milliseconds per batch of every window of
W batches for both, the subnormal values in the optimizer's state at the end, and how far the two runs'
losses and weights are apart.

Why: Adam's running mean of the gradient of an embedding or decoder row whose word is absent from a batch
shrinks by beta1 = 0.9 a step; after about 800 steps without the word it falls below 1.2e-38 and stays
subnormal for another ~150 steps, and a CPU computes on subnormal floats many times slower. The mode is
per thread, and a thread starts with its creator's: set after torch's thread pool has started, it holds
in the calling thread only.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch


def subnormals(optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """(subnormal values, all values) in the optimizer's state tensors."""
    tiny = torch.finfo(torch.float32).tiny
    count = total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0:
                count += int(((value != 0) & (value.abs() < tiny)).sum())
                total += value.numel()
    return count, total


def run_arm(args: argparse.Namespace) -> None:
    """One process: train N batches in the chosen mode, print the windows, save the weights."""
    flush = args.arm == "flush"
    torch.set_flush_denormal(flush)  # before any parallel operation: every thread inherits it
    from hw3.data import load_splits
    from hw3.download import wikitext2_dir
    from hw3.hparams import profile_defaults
    from hw3.train import autocast_dtype, build_model, count_batches, make_optimizer, make_scheduler, train
    from torch import nn

    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    hp = profile_defaults("full")
    amp_dtype = autocast_dtype(torch.device("cpu"), hp.precision)
    vocab, train_data, _, _ = load_splits(
        wikitext2_dir(data_dir=args.data_dir), hp.batch_size, hp.eval_batch_size
    )
    torch.manual_seed(hp.seed)
    model = build_model(len(vocab), hp)
    optimizer = make_optimizer(model, hp)
    scheduler = make_scheduler(optimizer, hp, count_batches(train_data, hp.bptt))
    torch.manual_seed(hp.seed)
    window_ms, losses, done = [], [], 0
    while done < args.batches:
        rows = train_data[done * hp.bptt : (done + args.window) * hp.bptt + 1]
        start = time.perf_counter()
        loss = train(model, hp.bptt, rows, nn.CrossEntropyLoss(), len(vocab), optimizer, scheduler, 1, 10**9,
                     clip=hp.clip, amp_dtype=amp_dtype, progress=False)  # fmt: skip
        window_ms.append((time.perf_counter() - start) * 1000 / args.window)
        losses.append(loss)
        print(f"{args.arm:8s} batches {done:5d}-{done + args.window - 1:5d}: {window_ms[-1]:6.1f} ms/batch  "
              f"loss {loss:.4f}", flush=True)  # fmt: skip
        done += args.window
    torch.set_flush_denormal(False)  # to count them
    count, total = subnormals(optimizer)
    print(f"{args.arm:8s} optimizer state: {count:,} subnormal values of {total:,}", flush=True)
    torch.save(model.state_dict(), args.weights)
    print("RESULT " + json.dumps({"window_ms": window_ms, "losses": losses}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1600, help="batches per run")
    parser.add_argument("--window", type=int, default=200, help="batches per timed window")
    parser.add_argument("--data-dir", help="folder with wiki.{train,valid,test}.tokens")
    parser.add_argument("--arm", choices=("default", "flush"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        run_arm(args)
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import cpu_name

    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in ("default", "flush"):
            weights = str(Path(tmp) / f"{arm}.pt")
            command = [sys.executable, __file__, "--arm", arm, "--weights", weights, "--batches", str(args.batches),
                       "--window", str(args.window)] + (["--data-dir", args.data_dir] if args.data_dir else [])  # fmt: skip
            lines = []
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
                for line in child.stdout:
                    if line.startswith("RESULT "):
                        results[arm] = json.loads(line[len("RESULT ") :])
                    else:
                        print(line, end="", flush=True)
                    lines.append(line)
            if child.returncode:
                print(f"{arm} run failed ({child.returncode})", file=sys.stderr)
                return 1
            results[arm]["weights"] = torch.load(weights, weights_only=True)
    slow, fast = results["default"], results["flush"]
    print("-" * 72)
    print(f"ms/batch, default vs flush: first window {slow['window_ms'][0]:.1f} vs {fast['window_ms'][0]:.1f}; "
          f"last window {slow['window_ms'][-1]:.1f} vs {fast['window_ms'][-1]:.1f}; median "
          f"{statistics.median(slow['window_ms']):.1f} vs {statistics.median(fast['window_ms']):.1f}")  # fmt: skip
    loss_diff = max(abs(a - b) for a, b in zip(slow["losses"], fast["losses"], strict=True))
    weight_diff = max((slow["weights"][k] - fast["weights"][k]).abs().max().item() for k in slow["weights"])
    print(
        f"largest difference between the runs: window mean loss {loss_diff:.2e} nats, weight {weight_diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
