"""Where a trained model's perplexity comes from: the loss at each position of the assignment's 35-token windows.

    python benchmarks/loss_by_position.py RUN_DIR [--split test|valid] [--data-dir DIR] [--threads T]

``RUN_DIR`` is a ``python -m hw3tools.train --out`` folder (its ``metrics.json`` gives the hyper-parameters,
``best_model.pt`` the weights). The assignment's ``evaluate`` cuts the split into independent windows of
``bptt`` tokens, so the first target of a window is predicted from one word, the last from 35: this prints
the perplexity per position (in groups), checks that the positions' mean equals ``evaluate``'s figure, and
prints what the split's perplexity would be if every position did as well as the long-context ones.
A diagnostic, not a test: a few minutes on a 2-core CPU.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from hw3.data import get_batch, load_splits
from hw3.download import wikitext2_dir
from hw3.hparams import HParams
from hw3.train import autocast_dtype, build_model, evaluate, resolve_device
from torch import nn


def position_losses(
    model: nn.Module, eval_data: torch.Tensor, bptt: int, amp_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and target count at each window position 0..bptt-1 (``evaluate``'s windows)."""
    model.eval()
    sums = torch.zeros(bptt, dtype=torch.float64)
    counts = torch.zeros(bptt, dtype=torch.float64)
    src_mask = model.generate_square_subsequent_mask(bptt).to(eval_data.device)
    with torch.no_grad():
        for i in range(0, eval_data.size(0) - 1, bptt):
            data, targets = get_batch(eval_data, i, bptt)
            seq_len = data.size(0)
            with torch.autocast(eval_data.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = model(data, src_mask[:seq_len, :seq_len])
            loss = nn.functional.cross_entropy(
                output.view(-1, output.size(-1)).float(), targets, reduction="none"
            ).view(seq_len, -1)
            sums[:seq_len] += loss.double().sum(dim=1).cpu()
            counts[:seq_len] += loss.size(1)
    return sums, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--data-dir", default=os.environ.get("HW3_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--long-from", type=int, default=20, help="positions >= this count as long-context")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 1 <= args.long_from < 35:
        parser.error(
            f"--long-from must be in [1, 34] (a position of the 35-token windows), got {args.long_from}"
        )
    metrics_path, weights_path = args.run_dir / "metrics.json", args.run_dir / "best_model.pt"
    for path in (metrics_path, weights_path):
        if not path.exists():
            print(f"error: {path} not found (RUN_DIR must be a finished `python -m hw3tools.train --out` folder)",
                  file=sys.stderr)  # fmt: skip
            return 2
    hp = HParams.from_dict(json.loads(metrics_path.read_text())["hparams"])
    device = resolve_device()
    vocab, _, val_data, test_data = load_splits(
        wikitext2_dir(data_dir=args.data_dir), hp.batch_size, hp.eval_batch_size, device
    )
    model = build_model(len(vocab), hp).to(device)
    model.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
    data = test_data if args.split == "test" else val_data
    amp = autocast_dtype(device, hp.precision)

    sums, counts = position_losses(model, data, hp.bptt, amp)
    mean = (sums.sum() / counts.sum()).item()
    reference = evaluate(model, data, hp.bptt, amp_dtype=amp)
    print(f"{args.run_dir} on {args.split}: ppl {math.exp(mean):.2f} from the positions, "
          f"{math.exp(reference):.2f} from evaluate ({counts.sum():.0f} targets)")  # fmt: skip
    if abs(mean - reference) > 1e-4:
        print(
            f"error: the positions' mean loss {mean:.6f} differs from evaluate's {reference:.6f}",
            file=sys.stderr,
        )
        return 1
    per_position = sums / counts
    print("position (= words of context - 1): ppl")
    for start in range(0, hp.bptt, 5):
        group = slice(start, min(start + 5, hp.bptt))
        loss = (sums[group].sum() / counts[group].sum()).item()
        cells = " ".join(f"{math.exp(v):7.1f}" for v in per_position[group].tolist())
        print(f"  {start:2d}-{group.stop - 1:2d}: {math.exp(loss):7.1f}   [{cells}]")
    long = slice(args.long_from, hp.bptt)
    long_loss = (sums[long].sum() / counts[long].sum()).item()
    print(f"positions >= {args.long_from}: ppl {math.exp(long_loss):.1f}; if every position did as well, the "
          f"split's ppl would be {math.exp(long_loss):.1f} instead of {math.exp(mean):.1f} "
          f"({mean - long_loss:.3f} nats of the mean loss come from the short contexts)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
