"""One training step on the chosen device and precision, before any training: a device that computes
wrongly (a broken driver, a GPU without the precision asked for) is named with the fix at the start of
the build, not after an hour of training.

The step is train()'s own (the notebook's), on a batch of random words, with the run's model sizes: on the
chosen device in the run's precision, and on the CPU in fp32 from the same weights with dropout off. The
two losses must agree within the precision's tolerance and every gradient must be finite.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from hw3.hparams import HParams
from hw3.loss_check import without_dropout
from hw3.train import autocast_dtype, build_model, make_optimizer, make_scheduler, resolve_device, train
from torch import nn

from hw3build.errors import BuildError

CHECK_VOCABULARY = 28_782  # WikiText-2's: the decoder the run will train
# The loss of one batch on the device against the CPU's in fp32, relative: fp32 on another device
# differs by the order of summation; bf16 autocast rounds every product to 8 significant bits.
RELATIVE_TOLERANCE = {"fp32": 1e-4, "bf16 autocast": 1e-2}


class DeviceCheckFailed(BuildError, RuntimeError):
    """The chosen device cannot train this model correctly; the message names it and the fix."""


@dataclass
class DeviceCheck:
    device: str
    precision: str
    loss_device: float
    loss_cpu: float

    def __str__(self) -> str:
        return (
            f"one training step on {self.device} ({self.precision}): loss {self.loss_device:.4f}, "
            f"the CPU in fp32: {self.loss_cpu:.4f}"
        )


def _one_step(model: nn.Module, hp: HParams, rows: torch.Tensor, amp_dtype) -> tuple[float, bool]:
    """train() on one batch of rows: its loss, and whether every gradient the step used was finite."""
    optimizer = make_optimizer(model, hp)
    scheduler = make_scheduler(optimizer, hp, 1)
    finite = []

    def capture(opt, args, kwargs) -> None:
        finite.append(
            all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        )

    optimizer.register_step_pre_hook(capture)
    loss = train(
        model, hp.bptt, rows, nn.CrossEntropyLoss(), CHECK_VOCABULARY, optimizer, scheduler, 0, 10**9,
        clip=hp.clip, amp_dtype=amp_dtype, progress=False,
    )  # fmt: skip
    return loss, bool(finite and finite[0])


def check_device(device_name: str, hp: HParams) -> DeviceCheck:
    """Run the check of the module docstring; DeviceCheckFailed says what failed and what to do."""
    fix = 'set device = "cpu" (or precision = "fp32") in submission.toml'
    try:
        device = resolve_device(device_name)
    except RuntimeError as exc:
        raise DeviceCheckFailed(f"{exc}; {fix}") from None
    amp_dtype = autocast_dtype(device, hp.precision)
    precision = "bf16 autocast" if amp_dtype is torch.bfloat16 else "fp32"
    generator = torch.Generator().manual_seed(hp.seed)
    rows = torch.randint(CHECK_VOCABULARY, (hp.bptt + 1, hp.batch_size), generator=generator)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(hp.seed)
        model = without_dropout(build_model(CHECK_VOCABULARY, hp))
        on_cpu = copy.deepcopy(model)
        try:
            loss_device, finite = _one_step(model.to(device), hp, rows.to(device), amp_dtype)
        except Exception as exc:  # noqa: BLE001 - any failure of the device is reported the same way
            raise DeviceCheckFailed(
                f"one training step on {device} ({precision}) failed: {type(exc).__name__}: {exc}\n  {fix}"
            ) from exc
        loss_cpu, _ = _one_step(on_cpu, hp.replace(precision="fp32"), rows, None)
    result = DeviceCheck(str(device), precision, loss_device, loss_cpu)
    tolerance = RELATIVE_TOLERANCE[precision]
    close = math.isfinite(loss_device) and abs(loss_device - loss_cpu) <= tolerance * abs(loss_cpu)
    if not (close and finite):
        what = (
            "a gradient that is not finite"
            if close
            else f"a loss off by more than {tolerance:.0e} (relative)"
        )
        raise DeviceCheckFailed(f"{result}: {what}; training there would be wrong.\n  {fix}")
    return result
