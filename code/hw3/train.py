"""Task 4: training and evaluation in the assignment's form, made fast without changing the maths.

- ``evaluate(model, eval_data, ...)`` is the assignment's function with its globals made arguments.
- ``train(model, bptt, ...)`` is the assignment's one-epoch loop with the blanks completed
  (``output = model(data, src_mask)``, ``loss = criterion(output.view(-1, ntokens), targets)``) and
  the same log lines, plus a progress bar (off when ``TQDM_DISABLE=1``).
- ``fit(...)`` is the assignment's epoch loop: validation after each epoch, the best model kept as a
  real copy (the assignment's ``best_model = model`` only keeps a reference to the final model), a
  per-epoch history, and Ctrl-C keeps what was learnt so far.

Speed, same computation: bf16 autocast where the hardware has it (the loss and its softmax in fp32),
the decoder and the loss fused in row chunks (:mod:`hw3.fused_loss`), the fused Adam kernel, and no
host synchronisation per step on GPUs. The learning-rate scheduler is stepped after every batch (see
:mod:`hw3.hparams` for the schedules; the assignment's per-epoch StepLR is one of them).

``python -m hw3.train`` trains outside the notebook with these functions (the command line is
``hw3.cli``).
"""

import copy
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hw3.data import get_batch
from hw3.fast_dropout import fast_dropout
from hw3.fused_loss import hidden_states, linear_cross_entropy
from hw3.hparams import HParams
from hw3.model import TransformerModel


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def set_seed(seed: int) -> None:
    """Seed every random source the training uses (Python, NumPy, torch on CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'"
        )
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX):
    only then bf16 pays."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without these probes: stay in fp32
        return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        # GPUs without bf16 (e.g. Colab's T4) train in fp32:
        # fp16 would need loss scaling in the loop
        return torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else None
    if precision == "bf16" or cpu_has_bf16():
        return torch.bfloat16
    return None


def resolved_run(device: torch.device, hp: HParams) -> dict[str, Any]:
    """What actually runs for ``hp`` on ``device``: the device and its name, the precision
    ``precision="auto"`` resolves to, the optimizer call, the CPU threads and torch's version."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.backends.cpu.get_cpu_capability()})"
    amp = autocast_dtype(device, hp.precision)
    return {
        "device": str(device),
        "device_name": name,
        "precision": "bf16 autocast" if amp is torch.bfloat16 else "fp32",
        "optimizer": hp.optimizer_description(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def tie_weights(model: TransformerModel) -> TransformerModel:
    """Make the decoder use the embedding matrix (both are ``ntoken x ninp``): one 7.2 M-weight
    matrix instead of two, trained by both the input and the output side
    (Press & Wolf 2017, Inan et al. 2017).
    The class stays as given; the decoder keeps its own bias."""
    model.decoder.weight = model.encoder.weight
    return model


def build_model(ntokens: int, hp: HParams) -> TransformerModel:
    """The given ``TransformerModel`` with the hyper-parameters' sizes, dropout and LayerNorm
    placement (and the decoder tied to the embedding when ``hp.tie_weights``)."""
    model = TransformerModel(
        ntokens, hp.emsize, hp.nhead, hp.nhid, hp.nlayers, hp.dropout, hp.norm_first
    )
    return tie_weights(model) if hp.tie_weights else model


def parameter_groups(model: nn.Module, hp: HParams) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The optimizer's parameters: all in one group, or with ``weight_decay > 0`` the weight
    matrices and embeddings (decayed) apart from the biases and LayerNorm gains (not decayed:
    nanoGPT's split, since pulling a gain or a bias towards 0 does not make the model simpler)."""
    params = list(model.parameters())
    if hp.weight_decay == 0:
        return params
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def optimizer_kwargs(hp: HParams) -> dict[str, Any]:
    """The keyword arguments of ``torch.optim.<hp.optimizer>`` for these hyper-parameters. With
    ``decoupled_weight_decay``, Adam and RAdam shrink the decayed weights by ``lr * weight_decay`` a
    step (AdamW) instead of adding an L2 term to their gradients."""
    if hp.optimizer == "SGD":
        return dict(lr=hp.lr, weight_decay=hp.weight_decay)
    return dict(
        lr=hp.lr,
        betas=(hp.adam_beta1, hp.adam_beta2),
        weight_decay=hp.weight_decay,
        decoupled_weight_decay=hp.decoupled_weight_decay,
    )


def make_optimizer(model: nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """SGD, Adam or RAdam over ``parameter_groups`` with ``optimizer_kwargs``;
    the fused kernel where torch has one (same maths)."""
    groups, kwargs = parameter_groups(model, hp), optimizer_kwargs(hp)
    optimizer_class = getattr(torch.optim, hp.optimizer)
    try:
        return optimizer_class(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this optimizer/device
        return optimizer_class(groups, **kwargs)


def clip_and_step(optimizer: torch.optim.Optimizer, params: list[Tensor], clip: float) -> None:
    """``clip_grad_norm_(params, clip)`` then ``optimizer.step()``,
    with one pass over the gradients less.

    The clipping factor is ``min(1, clip / (norm + 1e-6))`` as in ``clip_grad_norm_``. A fused
    optimizer (Adam/SGD with ``fused=True``) takes it as its ``grad_scale`` (the hook
    ``torch.amp.GradScaler`` uses; the kernel divides each gradient by it as it reads it), so the
    14.6 million gradients are not rewritten in memory first; other optimizers get the gradients
    multiplied in place, exactly as ``clip_grad_norm_``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total_norm = torch.nn.utils.get_total_norm(grads)
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


def lr_factor(
    step: int,
    *,
    schedule: str,
    warmup: int,
    batches_per_epoch: int,
    total: int,
    gamma: float,
    cooldown: float = 0.0,
) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warm-up times the schedule's
    shape, times a linear fall to zero over the last ``cooldown`` fraction of the
    ``total`` steps."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if (
        schedule == "step"
    ):  # the assignment's StepLR(optimizer, 1.0, gamma): x gamma after each epoch
        shape = gamma ** (step // batches_per_epoch)
    elif schedule == "cosine":  # half a cosine from the peak to 0 at the last step
        shape = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))
    elif schedule == "invsqrt":  # the peak at the end of the warm-up, then 1 / sqrt(step)
        shape = math.sqrt(max(warmup, 1) / max(step + 1, warmup, 1))
    else:
        shape = 1.0
    cool_start = total * (1.0 - cooldown)
    if cooldown > 0 and step >= cool_start:
        shape *= max(0.0, (total - step) / (total - cool_start))
    return warm * shape


def make_scheduler(optimizer: torch.optim.Optimizer, hp: HParams, batches_per_epoch: int):
    """A LambdaLR stepped after every batch
    (warm-up, then the chosen shape over ``hp.epochs`` epochs)."""
    factor = partial(
        lr_factor,
        schedule=hp.scheduler,
        warmup=hp.warmup_batches,
        batches_per_epoch=batches_per_epoch,
        total=hp.epochs * batches_per_epoch,
        gamma=hp.step_gamma,
        cooldown=hp.cooldown,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def count_batches(data: Tensor, bptt: int, max_batches: int | None = None) -> int:
    """Batches of ``bptt`` rows in ``data``
    (the last one may be shorter), capped at ``max_batches``."""
    n = math.ceil((data.size(0) - 1) / bptt)
    return n if max_batches is None else min(n, max_batches)


def epoch_slice(train_data: Tensor, epoch: int, max_batches: int | None, bptt: int) -> Tensor:
    """The rows epoch ``epoch`` trains on: all of them, or for a draft run (``max_batches``) the
    next ``max_batches`` batches after the previous epoch's, so each epoch sees new text
    (wrapping around)."""
    if max_batches is None:
        return train_data
    rows = max_batches * bptt
    start = ((epoch - 1) * rows) % max(1, train_data.size(0) - 1 - rows)
    return train_data[start : start + rows + 1]


def evaluate(
    model: nn.Module,
    eval_data: Tensor,
    bptt: int = 35,
    criterion: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
) -> float:
    """Mean loss per target token over ``eval_data`` (the assignment's ``evaluate``).

    Each batch's mean loss is weighted by its length; on a full pass the number of rows is
    ``len(eval_data) - 1``, exactly the assignment's denominator. ``max_batches`` evaluates a
    prefix only.
    """
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    model.eval()  # turn on evaluation mode
    total_loss = torch.zeros((), dtype=torch.float64, device=eval_data.device)
    rows = 0
    src_mask = model.generate_square_subsequent_mask(bptt).to(eval_data.device)
    with torch.no_grad():
        for i in range(0, eval_data.size(0) - 1, bptt)[:max_batches]:
            data, targets = get_batch(eval_data, i, bptt)
            seq_len = data.size(0)
            if seq_len != bptt:
                src_mask = src_mask[:seq_len, :seq_len]
            with torch.autocast(
                eval_data.device.type, dtype=amp_dtype, enabled=amp_dtype is not None
            ):
                output = model(data, src_mask)
            output_flat = output.view(-1, output.size(-1)).float()  # the softmax in fp32
            total_loss += seq_len * criterion(output_flat, targets)
            rows += seq_len
    return total_loss.item() / rows


def train(
    model: nn.Module,
    bptt: int,
    train_data: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler,
    epoch: int,
    criterion: nn.Module | None = None,
    clip: float = 0.5,
    log_interval: int = 200,
    max_batches: int | None = None,
    amp_dtype: torch.dtype | None = None,
    fused_loss: bool = True,
    progress: bool | None = None,
    cheap_dropout: bool = True,
    shuffle: bool = False,
    random_offset: bool = False,
) -> float:
    """One epoch of training (the assignment's ``train``);
    returns the mean training loss of the epoch.

    ``shuffle=True`` visits the epoch's ``bptt``-row chunks in a random order (drawn from torch's
    generator) instead of front to back: consecutive updates then no longer come from the
    same articles.
    ``random_offset=True`` starts the chunks at a random row in ``[0, bptt)`` (drawn first, from the
    same generator) and leaves out the rows before it: every epoch cuts the text at other places, so
    a word is seen with other contexts instead of the same 35-token windows each epoch.

    ``fused_loss=False`` with ``amp_dtype=None`` is exactly the assignment's loop.
    ``fused_loss=True`` computes the same loss with the decoder and the cross-entropy fused
    (:mod:`hw3.fused_loss`), folds the gradient clipping into the optimizer step and, on CPUs with
    ``cheap_dropout``, draws the dropout masks with a faster generator (:mod:`hw3.fast_dropout`;
    same distribution, other masks).
    """
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    device = train_data.device
    model.train()  # turn on train mode
    total_loss = torch.zeros((), device=device)  # summed on the device: no host sync per step
    epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
    start_time = time.time()
    src_mask = model.generate_square_subsequent_mask(bptt).to(device)
    check_every = (
        1 if device.type == "cpu" else log_interval
    )  # .item() is free on the CPU, a sync on GPUs

    # drawn before anything else of the epoch, so the shuffle order stays a function of the seed
    offset = (
        int(torch.randint(bptt, ()).item())
        if random_offset and train_data.size(0) - 1 > bptt
        else 0
    )
    num_batches = count_batches(train_data[offset:], bptt, max_batches)
    show_bar = progress if progress is not None else os.environ.get("TQDM_DISABLE", "") in ("", "0")
    bar = tqdm(
        total=num_batches, desc=f"epoch {epoch}", unit="batch", disable=not show_bar, leave=False
    )
    params = [p for p in model.parameters() if p.requires_grad]
    # the fast path draws CPU dropout masks with a faster generator (same distribution)
    dropout_context = (
        fast_dropout(model)
        if fused_loss and cheap_dropout and device.type == "cpu"
        else nullcontext()
    )
    with dropout_context:
        starts = range(offset, train_data.size(0) - 1, bptt)[:num_batches]
        if shuffle:
            starts = [starts[k] for k in torch.randperm(len(starts)).tolist()]
        for batch, i in enumerate(starts):
            data, targets = get_batch(train_data, i, bptt)
            seq_len = data.size(0)
            # the shorter last chunk gets a cut mask of its own (shuffled, it is not the last batch)
            mask = src_mask if seq_len == bptt else src_mask[:seq_len, :seq_len]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                if fused_loss:
                    hidden = hidden_states(model, data, mask)
                else:
                    output = model(data, mask)
            if fused_loss:
                decoder = model.decoder
                hidden = hidden.reshape(-1, hidden.size(-1))
                loss = linear_cross_entropy(
                    hidden, decoder.weight, decoder.bias, targets, amp_dtype or torch.float32
                )
            else:
                ntokens = output.size(-1)
                loss = criterion(output.view(-1, ntokens).float(), targets)

            optimizer.zero_grad()
            loss.backward()
            if fused_loss:
                clip_and_step(optimizer, params, clip)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
            lr_used = scheduler.get_last_lr()[0]
            # per batch: the schedules of hw3.hparams are defined per optimizer step
            scheduler.step()

            total_loss += loss.detach()
            epoch_loss += loss.detach()
            bar.update(1)
            if (batch + 1) % check_every == 0 or batch + 1 == num_batches:
                check_finite(total_loss, epoch, batch, lr_used)
            if batch % log_interval == 0 and batch > 0:
                lr = scheduler.get_last_lr()[0]
                ms_per_batch = (time.time() - start_time) * 1000 / log_interval
                cur_loss = total_loss.item() / log_interval
                ppl = math.exp(cur_loss)
                line = (
                    f"| epoch {epoch:3d} | {batch:5d}/{num_batches:5d} batches | "
                    f"lr {lr:.2e} | ms/batch {ms_per_batch:5.2f} | "
                    f"loss {cur_loss:5.2f} | ppl {ppl:8.2f}"
                )
                if show_bar:
                    bar.write(line)
                else:
                    print(line, flush=True)
                bar.set_postfix(loss=f"{cur_loss:.2f}", ppl=f"{ppl:.1f}")
                total_loss.zero_()
                start_time = time.time()
    bar.close()
    return epoch_loss.item() / num_batches


def check_finite(loss_sum: Tensor, epoch: int, batch: int, lr: float) -> None:
    """Stop with a clear message when the (summed) training loss is NaN or infinite."""
    value = loss_sum.item()
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training loss became {value} at epoch {epoch}, batch {batch} "
            f"(learning rate {lr:.3g}). "
            f"Hint: lower lr, lengthen warmup_batches, or set precision='fp32' "
            f"to rule out low precision."
        )


@dataclass
class FitResult:
    """What ``fit`` returns: the best model (a copy), the per-epoch history
    and how the run ended."""

    best_model: nn.Module | None
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    train_seconds: float = 0.0
    interrupted: bool = False
    # what a checkpoint needs besides the model (see ``checkpoint_state``)
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    scheduler: object = field(default=None, repr=False)


def fit(
    model: nn.Module,
    train_data: Tensor,
    val_data: Tensor,
    hp: HParams,
    fused_loss: bool = True,
    progress: bool | None = None,
    on_epoch_end=None,
    resume: dict | None = None,
) -> FitResult:
    """The assignment's epoch loop: train, validate after each epoch,
    keep the best model (a real copy).

    ``on_epoch_end(result)`` is called after every epoch (e.g. to save a checkpoint). Ctrl-C stops
    training and returns the best model and history so far, with ``interrupted=True``. ``resume``, a
    ``checkpoint_state`` of an earlier run with the same hyper-parameters, continues that run after
    its last epoch as if it had never stopped (weights, optimizer, schedule, random
    generators, history).
    """
    device = train_data.device
    amp_dtype = autocast_dtype(device, hp.precision)
    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, hp)
    batches_per_epoch = count_batches(train_data, hp.bptt, hp.max_train_batches)
    scheduler = make_scheduler(optimizer, hp, batches_per_epoch)
    result = FitResult(best_model=None, optimizer=optimizer, scheduler=scheduler)
    first_epoch = 1 if resume is None else restore_checkpoint(resume, model, result) + 1
    fit_start = time.time() - result.train_seconds
    try:
        for epoch in range(first_epoch, hp.epochs + 1):
            epoch_start_time = time.time()
            epoch_data = epoch_slice(train_data, epoch, hp.max_train_batches, hp.bptt)
            train_loss = train(
                model, hp.bptt, epoch_data, optimizer, scheduler, epoch, criterion=criterion,
                clip=hp.clip, log_interval=hp.log_interval, max_batches=hp.max_train_batches,
                amp_dtype=amp_dtype, fused_loss=fused_loss, progress=progress,
                shuffle=hp.shuffle_batches, random_offset=hp.random_offset,
            )  # fmt: skip
            lr = scheduler.get_last_lr()[0]  # the learning rate reached at the end of the epoch
            val_loss = evaluate(model, val_data, hp.bptt, criterion, amp_dtype, hp.max_eval_batches)
            seconds = time.time() - epoch_start_time
            print("-" * 89)
            print(
                f"| end of epoch {epoch:3d} | time: {seconds:5.2f}s | valid loss {val_loss:5.2f} | "
                f"valid ppl {math.exp(val_loss):8.2f}"
            )
            print("-" * 89, flush=True)
            result.history.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                 "val_ppl": math.exp(val_loss), "lr": lr, "seconds": seconds}
            )  # fmt: skip
            if val_loss < result.best_val_loss:
                result.best_val_loss = val_loss
                result.best_epoch = epoch
                result.best_model = copy.deepcopy(
                    model
                )  # a copy: `best_model = model` would follow training
            result.train_seconds = time.time() - fit_start
            if on_epoch_end is not None:
                on_epoch_end(result)
    except KeyboardInterrupt:
        result.interrupted = True
        result.train_seconds = time.time() - fit_start
        print(
            f"Interrupted: keeping the best model so far (epoch {result.best_epoch}).", flush=True
        )
    return result


def checkpoint_state(model: nn.Module, result: FitResult) -> dict:
    """Everything ``fit(..., resume=...)`` needs to continue a run after its last finished epoch."""
    return {
        "epoch": result.history[-1]["epoch"] if result.history else 0,
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(result.optimizer.state_dict()),
        "scheduler": result.scheduler.state_dict(),
        "best_model": None if result.best_model is None else result.best_model.state_dict(),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "history": copy.deepcopy(result.history),
        "train_seconds": result.train_seconds,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "python": random.getstate(),
        },
    }


def restore_checkpoint(state: dict, model: nn.Module, result: FitResult) -> int:
    """Load a ``checkpoint_state`` into the model, the result's optimizer and scheduler;
    returns its epoch."""
    model.load_state_dict(state["model"])
    result.optimizer.load_state_dict(state["optimizer"])
    result.scheduler.load_state_dict(state["scheduler"])
    result.history = copy.deepcopy(state["history"])
    result.best_epoch, result.best_val_loss = state["best_epoch"], state["best_val_loss"]
    if state["best_model"] is not None:
        result.best_model = copy.deepcopy(model)
        result.best_model.load_state_dict(state["best_model"])
    result.train_seconds = state["train_seconds"]
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    np.random.set_state(_numpy_state_from_tensors(state["rng"]["numpy"]))
    random.setstate(state["rng"]["python"])
    return state["epoch"]


def _numpy_state_to_tensors(state: tuple) -> tuple:
    """NumPy's generator state with its key array as a tensor: a checkpoint then holds only tensors
    and plain values, so ``torch.load(..., weights_only=True)`` reads it (no pickled NumPy
    objects)."""
    name, keys, position, has_gauss, cached = state
    return (
        name,
        torch.from_numpy(keys.astype(np.int64)),
        int(position),
        int(has_gauss),
        float(cached),
    )


def _numpy_state_from_tensors(state: tuple) -> tuple:
    name, keys, position, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), position, has_gauss, cached)


if __name__ == "__main__":  # `python -m hw3.train`: the command line lives in hw3.cli
    from hw3.cli import main

    sys.exit(main())
