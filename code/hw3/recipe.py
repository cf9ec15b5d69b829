"""The parts of Task 4's training recipe that train() calls (hw3/train.py).

- chunk_starts: the order in which an epoch visits its bptt-row chunks,
- clip_and_step: the gradient clipping folded into the fused optimizer update,
- EpochLog: the given train()'s log line, from losses summed on the device, with a check that the
  loss is finite.
"""

import math
import os
import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from hw3.metrics import perplexity


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def chunk_starts(
    train_data: Tensor,
    bptt: int,
    max_batches: int | None = None,
    shuffle: bool = False,
    random_offset: bool = False,
) -> list[int]:
    """The first row of each bptt-row chunk of an epoch, in the order they are trained.

    The given loop uses rows 0, bptt, 2 bptt, ... in this order. random_offset starts at a row drawn
    from torch's seeded generator in [0, bptt) and leaves out the rows before it; shuffle visits the
    chunks in a random order from the same generator (the offset is drawn first).
    """
    rows = train_data.size(0) - 1
    offset = int(torch.randint(bptt, ()).item()) if random_offset and rows > bptt else 0
    starts = list(range(offset, rows, bptt))[:max_batches]
    if shuffle:
        starts = [starts[k] for k in torch.randperm(len(starts)).tolist()]
    return starts


def clip_and_step(
    optimizer: torch.optim.Optimizer,
    params: list[Tensor],
    clip: float,
    rows_used: tuple[Tensor, Tensor] | None = None,
) -> None:
    """clip_grad_norm_(params, clip) then optimizer.step(), with one pass over the gradients less.

    The clipping factor is min(1, clip / (norm + 1e-6)), as in clip_grad_norm_. A fused optimizer
    (Adam or SGD with fused=True) takes it as its grad_scale (the hook torch.amp.GradScaler uses:
    the kernel divides each gradient by it as it reads it), so the gradients are not rewritten in
    memory first; other optimizers get the gradients multiplied in place, as clip_grad_norm_ does.

    rows_used, (weight, ids): a parameter whose gradient is zero outside the rows ids, an embedding
    and the batch's words. Its part of the norm is summed over those rows only (700 of 28,782 here):
    the same norm, its squares added in another order.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm_parts = grads
    if rows_used is not None and rows_used[0].grad is not None:
        weight, ids = rows_used
        rows = weight.grad.index_select(0, ids.reshape(-1).unique())
        norm_parts = [rows if grad is weight.grad else grad for grad in grads]
    total_norm = torch.nn.utils.get_total_norm(norm_parts)
    factor = torch.clamp(clip / (total_norm + 1e-6), max=1.0)
    if getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"):
        optimizer.grad_scale = factor.reciprocal()
        optimizer.found_inf = torch.zeros((), dtype=torch.float32, device=factor.device)
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf
    else:
        torch._foreach_mul_(grads, factor)
        optimizer.step()


class EpochLog:
    """The given train()'s log line every log_interval batches, from losses summed on the device
    (a GPU waits only when a line is printed), a NaN check and an optional progress bar."""

    def __init__(self, epoch: int, num_batches: int, log_interval: int, device, progress=None):
        self.epoch, self.num_batches, self.log_interval = epoch, num_batches, log_interval
        self.interval_loss = torch.zeros((), device=device)
        self.epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
        self.check_every = 1 if device.type == "cpu" else log_interval  # .item() syncs a GPU
        show = progress if progress is not None else os.environ.get("TQDM_DISABLE", "") in ("", "0")
        self.bar = tqdm(
            total=num_batches, desc=f"epoch {epoch}", unit="batch", disable=not show, leave=False
        )
        self.start_time = time.time()

    def add(self, batch: int, loss: Tensor, lr: float) -> None:
        """Account for one batch's loss (lr: the learning rate of the step just taken)."""
        self.interval_loss += loss.detach()
        self.epoch_loss += loss.detach()
        self.bar.update(1)
        if (batch + 1) % self.check_every == 0 or batch + 1 == self.num_batches:
            check_finite(self.interval_loss, self.epoch, batch, lr)
        if batch % self.log_interval == 0 and batch > 0:
            ms_per_batch = (time.time() - self.start_time) * 1000 / self.log_interval
            cur_loss = self.interval_loss.item() / self.log_interval
            line = (
                f"| epoch {self.epoch:3d} | {batch:5d}/{self.num_batches:5d} batches | "
                f"lr {lr:.2e} | ms/batch {ms_per_batch:5.2f} | "
                f"loss {cur_loss:5.2f} | ppl {perplexity(cur_loss):8.2f}"
            )
            if self.bar.disable:
                print(line, flush=True)
            else:
                self.bar.write(line)
            self.interval_loss.zero_()
            self.start_time = time.time()

    def close(self) -> float:
        """The epoch's mean training loss."""
        self.bar.close()
        return self.epoch_loss.item() / self.num_batches


def check_finite(loss_sum: Tensor, epoch: int, batch: int, lr: float) -> None:
    """Stop with a clear message when the (summed) training loss is NaN or infinite."""
    value = loss_sum.item()
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training loss became {value} at epoch {epoch}, batch {batch} "
            f"(learning rate {lr:.3g}). Hint: lower lr, lengthen warmup_batches, or set "
            "precision='fp32' to rule out low precision."
        )
