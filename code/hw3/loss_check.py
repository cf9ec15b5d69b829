"""Task 4's check of the line that computes train()'s loss: the two completed lines as written
against decoder_cross_entropy, the line that runs.

check_loss_lines calls train() itself on single batches of the training data, from the same weights
with dropout off, once with fused_loss=False (output = model(data, src_mask) and
loss = criterion(output.view(-1, ntokens), targets)) and once with fused_loss=True
(decoder_cross_entropy), in the run's precision. It compares the two losses and the two gradients
the optimizer received (clipped), then times both with dropout on, batches taking turns.
"""

import copy
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hw3.hparams import HParams
from hw3.train import autocast_dtype, make_optimizer, make_scheduler

# What the two ways of computing the same loss may differ by. In fp32 only the order of summation
# differs. Under bf16 autocast the decoder's products are rounded to 8 significant bits in both, but
# at different places (the two lines keep bf16 logits and take the softmax in fp32; the fused
# function stores the fp32 softmax in bf16); measured on the full model: 1e-4 nats, 2e-3 relative.
LOSS_TOLERANCE = {"fp32": 1e-4, "bf16 autocast": 2e-3}  # nats, the batch's mean loss
GRADIENT_TOLERANCE = {"fp32": 1e-4, "bf16 autocast": 1e-2}  # |g_fused - g_written| / |g_written|


def without_dropout(model: nn.Module) -> nn.Module:
    """A copy of model with every dropout probability 0: two runs of it compute the same maths."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.0
    return model


def step_gradient(model: nn.Module, hp: HParams, run_epoch) -> tuple[Tensor, float]:
    """Run run_epoch(model, optimizer, scheduler) (one batch) with a fresh optimizer; return the
    gradient its optimizer step received (clipped, flattened) and what run_epoch returned."""
    optimizer = make_optimizer(model, hp)
    scheduler = make_scheduler(optimizer, hp, 1)
    received = []

    def capture(opt, args, kwargs) -> None:
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
        grad = torch.cat([g.reshape(-1).float() for g in grads])  # no gradient: a zero one
        scale = getattr(opt, "grad_scale", None)  # clip_and_step's factor, for a fused optimizer
        received.append(grad if scale is None else grad / scale)

    handle = optimizer.register_step_pre_hook(capture)
    returned = run_epoch(model, optimizer, scheduler)
    handle.remove()
    return received[0], returned


def ms_per_batch(model: nn.Module, hp: HParams, run_epochs: dict, rows: Tensor, batches: int):
    """Median milliseconds per batch of each run_epoch(model, optimizer, scheduler, rows) in
    run_epochs (name -> function), each on its own copy of model after one batch of warm-up. The
    ways take turns batch by batch, so a machine that slows down for a while slows all alike."""
    copies, times = {}, {name: [] for name in run_epochs}
    for name, run_epoch in run_epochs.items():
        copy_ = copy.deepcopy(model)
        optimizer = make_optimizer(copy_, hp)
        copies[name] = (copy_, optimizer, make_scheduler(optimizer, hp, batches + 1))
        run_epoch(*copies[name], rows[: hp.bptt + 1])  # warm-up
    for batch in range(batches):
        one_batch = rows[batch * hp.bptt : (batch + 1) * hp.bptt + 1]
        for name, run_epoch in run_epochs.items():
            if rows.device.type == "cuda":
                torch.cuda.synchronize(rows.device)
            start = time.perf_counter()
            run_epoch(*copies[name], one_batch)
            if rows.device.type == "cuda":
                torch.cuda.synchronize(rows.device)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class LossLinesCheck:
    """The two completed lines against decoder_cross_entropy, inside train(), batch by batch."""

    precision: str
    batches: list[int]  # which batches of the epoch (1 = the first)
    loss_written: list[float]
    loss_fused: list[float]
    gradient_difference: list[float]  # |g_fused - g_written| / |g_written|, clipped gradients
    ms_written: float
    ms_fused: float
    timed_batches: int
    dropout: float  # the model's dropout probability while timed (the run's)

    @property
    def loss_tolerance(self) -> float:
        return LOSS_TOLERANCE[self.precision]

    @property
    def gradient_tolerance(self) -> float:
        return GRADIENT_TOLERANCE[self.precision]

    @property
    def passed(self) -> bool:
        """Every batch's loss and gradient within the tolerances."""
        losses = zip(self.loss_written, self.loss_fused, strict=True)
        return all(abs(a - b) <= self.loss_tolerance for a, b in losses) and all(
            d <= self.gradient_tolerance for d in self.gradient_difference
        )

    def __str__(self) -> str:
        lines = [
            "train() with the two completed lines as written (fused_loss=False) and with",
            f"decoder_cross_entropy (fused_loss=True, as it trains), {self.precision},",
            "one batch each from the same initial weights, dropout off:",
            "  batch | loss as written | decoder_cross_entropy | difference | gradient difference",
        ]
        for batch, a, b, d in zip(
            self.batches, self.loss_written, self.loss_fused, self.gradient_difference, strict=True
        ):
            lines.append(f"  {batch:5d} | {a:15.4f} | {b:21.4f} | {abs(a - b):10.1e} | {d:19.1e}")
        verdict = "both hold" if self.passed else "EXCEEDED"
        speed = self.ms_written / self.ms_fused
        lines += [
            f"  tolerances: loss {self.loss_tolerance:g} nats, gradient "
            f"{self.gradient_tolerance:g} (relative): {verdict}",
            f"Speed, median of {self.timed_batches} batches each, taking turns, with the run's "
            f"dropout ({self.dropout:g}):",
            f"  as written {self.ms_written:.0f} ms/batch, decoder_cross_entropy "
            f"{self.ms_fused:.0f} ms/batch ({speed:.2f}x as fast)",
        ]
        return "\n".join(lines)


def check_loss_lines(train, model, train_data, hp, ntokens, batches=3, timed_batches=5):
    """Run train (the notebook's train()) with fused_loss False and True on `batches` batches spread
    over train_data, from copies of model with dropout off, and compare the losses and the clipped
    gradients the optimizer received; then time both over timed_batches batches (with the run's
    dropout). Torch's random state is left as it was, so the training that follows is the same as
    without this check."""
    amp_dtype = autocast_dtype(train_data.device, hp.precision)
    precision = "bf16 autocast" if amp_dtype is torch.bfloat16 else "fp32"
    criterion = nn.CrossEntropyLoss()
    n_chunks = (train_data.size(0) - 1) // hp.bptt
    chosen = sorted({k * n_chunks // batches for k in range(batches)})

    def one_way(fused: bool):
        def run_epoch(m, optimizer, scheduler, rows):
            return train(
                m,
                hp.bptt,
                rows,
                criterion,
                ntokens,
                optimizer,
                scheduler,
                0,
                10**9,
                clip=hp.clip,
                amp_dtype=amp_dtype,
                fused_loss=fused,
                progress=False,
            )

        return run_epoch

    written, fused = one_way(False), one_way(True)
    loss_written, loss_fused, differences = [], [], []
    devices = [train_data.device] if train_data.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for chunk in chosen:
            rows = train_data[chunk * hp.bptt : (chunk + 1) * hp.bptt + 1]
            g_written, a = step_gradient(
                without_dropout(model), hp, lambda m, o, s, r=rows: written(m, o, s, r)
            )
            g_fused, b = step_gradient(
                without_dropout(model), hp, lambda m, o, s, r=rows: fused(m, o, s, r)
            )
            loss_written.append(a)
            loss_fused.append(b)
            differences.append(((g_fused - g_written).norm() / g_written.norm()).item())
        rows = train_data[: timed_batches * hp.bptt + 1]
        ms = ms_per_batch(model, hp, {"written": written, "fused": fused}, rows, timed_batches)
    return LossLinesCheck(
        precision,
        [chunk + 1 for chunk in chosen],
        loss_written,
        loss_fused,
        differences,
        ms["written"],
        ms["fused"],
        timed_batches,
        hp.dropout,
    )
