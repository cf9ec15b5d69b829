"""Trials per hour of a study with K = 1, 2, ... worker processes on this machine (proxy budget, shortened).

    python benchmarks/bench_sweep.py [--workers 1 2] [--trials 4] [--batches 200] [--epochs 3]
        [--data-dir DIR | --corpus DIR] [--device auto|cpu|cuda]

Each K runs a fresh study (``python -m hw3sweep``, exactly as a user would, in a temporary folder) of
``--trials`` trials of the proxy budget cut to ``--epochs`` epochs of ``--batches`` batches, with the
model's size fixed at the full profile's (emsize = nhid = 250, 4 layers, 2 heads) so every trial is the
same amount of work, no pruning, and prints the wall-clock time and trials per hour. On the CPU each
worker gets cores / K threads; on a GPU the K workers share the card. Run it alone on an idle machine:
anything else running makes the figures meaningless. ``--corpus`` takes unchecked wiki.*.tokens files
(to check the script itself on a tiny corpus).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAME_WORK = ["emsize=250", "nhid=250", "nlayers=4", "nhead=2"]


def run_study(workers: int, args: argparse.Namespace, folder: Path) -> float:
    """Wall-clock seconds of a study of ``args.trials`` trials with ``workers`` workers."""
    data = (
        ["--corpus", args.corpus] if args.corpus else (["--data-dir", args.data_dir] if args.data_dir else [])
    )
    command = [
        sys.executable, "-m", "hw3sweep", "--study", f"bench-{workers}", "--storage", str(folder / f"k{workers}.journal"),
        "--trials", str(args.trials), "--workers", str(workers), "--budget", "proxy", "--pruner", "none",
        "--device", args.device, "--no-report", *data,
        "--set", f"epochs={args.epochs}", f"max_train_batches={args.batches}", *SAME_WORK,
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "code"), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"K={workers}: the study failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("HW3_DATA_DIR"))
    parser.add_argument("--corpus", help="unchecked wiki.{train,valid,test}.tokens (to check the script)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    for name in ("data_dir", "corpus"):  # the studies run in a temporary folder
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    print(f"{args.trials} trials of {args.epochs} epochs x {args.batches} batches (whole validation split), "
          f"device {args.device}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'K':>3} {'seconds':>9} {'trials/hour':>12} {'vs K=1':>7}")
    base = None
    with tempfile.TemporaryDirectory(prefix="hw3-bench-sweep-") as tmp:
        for k in args.workers:
            seconds = run_study(k, args, Path(tmp))
            rate = args.trials / seconds * 3600
            base = base or rate
            print(f"{k:3d} {seconds:9.1f} {rate:12.1f} {rate / base:6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
