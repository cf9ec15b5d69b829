"""Task 4: training and evaluation in the assignment's form.

- evaluate(model, eval_data, ...) is the given function, its globals made arguments.
- train(model, bptt, ...) is the given one-epoch function, its globals made arguments, its two
  blanks completed and this run's recipe added where it acts (its keyword arguments). It trains.
- fit(...) is the given epoch loop, completed: train() then evaluate() every epoch, the best model
  kept as a copy.

python -m hw3tools.train trains outside the notebook with these functions.
"""

import copy
import math
import random
import sys
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from hw3.data import get_batch
from hw3.fast_dropout import fast_dropout
from hw3.fused_loss import decoder_cross_entropy
from hw3.hparams import HParams
from hw3.metrics import perplexity
from hw3.model import TransformerModel
from hw3.recipe import EpochLog, chunk_starts, clip_and_step


def set_seed(seed: int) -> None:
    """Seed every random source the training uses (Python, NumPy, torch on CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'"
        )
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX): only then bf16
    pays."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without these probes: stay in fp32
        return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for precision on device; None means plain fp32."""
    return precision_choice(device, precision)[0]


def precision_choice(
    device: torch.device, precision: str = "auto"
) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None: plain fp32) for precision on device, and why."""
    if precision == "fp32":
        return None, "precision = 'fp32' was chosen"
    if precision == "bf16":
        return torch.bfloat16, "precision = 'bf16' was chosen"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "precision = 'auto' and this GPU computes in bf16"
        # fp16 would need loss scaling in the loop
        return None, "precision = 'auto' and this GPU has no bf16"
    if cpu_has_bf16():
        return torch.bfloat16, "precision = 'auto' and this CPU multiplies bf16 natively"
    return None, "precision = 'auto' and this CPU has no native bf16 (it would be slower)"


def attention_kernel(device: torch.device, amp_dtype: torch.dtype | None) -> AbstractContextManager:
    """The attention kernel train() runs, as a context: on a CPU in bf16, torch's math kernel,
    which computes bf16 attention in fp32 (faster here than the flash kernel's bf16 backward, and
    rounded less); anywhere else torch's own choice."""
    if device.type == "cpu" and amp_dtype is not None:
        return sdpa_kernel(SDPBackend.MATH)
    return nullcontext()


def resolved_run(device: torch.device, hp: HParams) -> dict[str, Any]:
    """What runs for hp on device: the device and its name, the precision (and why), the optimizer,
    the CPU threads and torch's version."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.backends.cpu.get_cpu_capability()})"
    amp, why = precision_choice(device, hp.precision)
    return {
        "device": str(device),
        "device_name": name,
        "precision": "bf16 autocast" if amp is torch.bfloat16 else "fp32",
        "precision_why": why,
        "optimizer": hp.optimizer_description(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def tie_weights(model: nn.Module) -> nn.Module:
    """Make the decoder use the embedding matrix (both are ntoken x ninp): one matrix instead of
    two, trained from the input and the output side (Press & Wolf 2017). The given class is
    unchanged; the decoder keeps its own bias."""
    model.decoder.weight = model.encoder.weight
    return model


def build_model(ntokens: int, hp: HParams) -> TransformerModel:
    """The given TransformerModel with the hyper-parameters' sizes, dropout and LayerNorm placement
    (and the decoder tied to the embedding when hp.tie_weights)."""
    with warnings.catch_warnings():  # pre-LN skips a fast path torch uses only with padding masks
        warnings.filterwarnings("ignore", message=".*use_nested_tensor is False")
        model = TransformerModel(
            ntokens, hp.emsize, hp.nhead, hp.nhid, hp.nlayers, hp.dropout, hp.norm_first
        )
    return tie_weights(model) if hp.tie_weights else model


def parameter_groups(model: nn.Module, hp: HParams) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The optimizer's parameters: one group, or with weight decay the weight matrices and
    embeddings (decayed) apart from the biases and LayerNorm gains (not decayed: pulling a gain or
    a bias towards 0 does not make the model simpler)."""
    params = list(model.parameters())
    if hp.weight_decay == 0:
        return params
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def optimizer_kwargs(hp: HParams) -> dict[str, Any]:
    """The keyword arguments of torch.optim.<hp.optimizer>. With decoupled_weight_decay, Adam and
    RAdam shrink the decayed weights by lr * weight_decay a step (the AdamW form) instead of adding
    an L2 term to their gradients."""
    if hp.optimizer == "SGD":
        return dict(lr=hp.lr, weight_decay=hp.weight_decay)
    return dict(
        lr=hp.lr,
        betas=(hp.adam_beta1, hp.adam_beta2),
        weight_decay=hp.weight_decay,
        decoupled_weight_decay=hp.decoupled_weight_decay,
    )


def make_optimizer(model: nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """SGD, Adam or RAdam over parameter_groups with optimizer_kwargs; the fused kernel where torch
    has one (same maths)."""
    groups, kwargs = parameter_groups(model, hp), optimizer_kwargs(hp)
    optimizer_class = getattr(torch.optim, hp.optimizer)
    try:
        return optimizer_class(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this optimizer/device
        return optimizer_class(groups, **kwargs)


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
    """Learning-rate multiplier after step optimizer steps: a linear warm-up times the schedule's
    shape, times a linear fall to zero over the last cooldown fraction of the total steps."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "step":  # StepLR(optimizer, 1.0, gamma): x gamma after each epoch
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
    """A LambdaLR stepped after every batch (warm-up, then the chosen shape over hp.epochs)."""
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
    """Batches of bptt rows in data (the last one may be shorter), capped at max_batches."""
    n = math.ceil((data.size(0) - 1) / bptt)
    return n if max_batches is None else min(n, max_batches)


def epoch_slice(train_data: Tensor, epoch: int, max_batches: int | None, bptt: int) -> Tensor:
    """The rows an epoch trains on: all of them, or with max_batches (the quick profile) the next
    max_batches batches after the previous epoch's, so each epoch sees new text (wrapping
    around)."""
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
    """Mean loss per target word over eval_data (the given evaluate). On a full pass the batch
    losses, weighted by their lengths, are divided by len(eval_data) - 1 rows, as in the given code;
    max_batches evaluates only the first max_batches batches (the quick profile's limit)."""
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
            with torch.autocast(data.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = model(data, src_mask)
            output_flat = output.view(-1, output.size(-1)).float()  # the softmax in fp32
            total_loss += seq_len * criterion(output_flat, targets)
            rows += seq_len
    return total_loss.item() / rows


def train(
    model,
    bptt,
    train_data,
    criterion,
    ntokens,
    optimizer,
    scheduler,
    epoch,
    log_interval=200,
    *,
    clip=0.5,
    amp_dtype=None,
    max_batches=None,
    shuffle=False,
    random_offset=False,
    fused_loss=True,
    cheap_dropout=True,
    progress=None,
) -> float:
    """The given train(): one epoch; its globals are arguments, its blanks completed. The keyword
    arguments are this run's recipe, each used where it acts. Returns the epoch's mean loss."""
    model.train()  # turn on train mode
    device = train_data.device
    full_mask = model.generate_square_subsequent_mask(bptt).to(device)
    # The first row of each chunk, in training order: as given 0, bptt, 2 bptt, ...; random_offset
    # starts at a random row in [0, bptt) (a word is not always in the same 35-word window) and
    # shuffle visits the chunks in a random order (consecutive steps not all from one article).
    starts = chunk_starts(train_data, bptt, max_batches, shuffle, random_offset)
    num_batches = len(starts)
    log = EpochLog(epoch, num_batches, log_interval, device, progress)  # the given log line
    params = [p for p in model.parameters() if p.requires_grad]
    # the embedding's gradient is zero outside a batch's words, unless the decoder shares it
    embedding = model.encoder.weight
    sparse_embedding = embedding is not model.decoder.weight
    # On a CPU, dropout masks from NumPy's PCG64 generator: same distribution, a sixth of the cost.
    with fast_dropout(model) if cheap_dropout and device.type == "cpu" else nullcontext():
        for batch, i in enumerate(starts):
            data, targets = get_batch(train_data, i, bptt)
            seq_len = data.size(0)
            # a shorter chunk gets a cut mask (shuffled, the last chunk need not come last)
            src_mask = full_mask if seq_len == bptt else full_mask[:seq_len, :seq_len]
            # bf16 autocast where the hardware multiplies bf16 natively (amp_dtype), else fp32;
            # on a CPU the attention itself in fp32 (attention_kernel)
            with (
                torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
                attention_kernel(device, amp_dtype),
            ):
                if fused_loss:  # the same loss as the two lines below, without the output tensor
                    loss = decoder_cross_entropy(model, data, src_mask, targets)
                else:
                    output = model(data, src_mask)  # completed
                    loss = criterion(output.view(-1, ntokens), targets)  # completed

            optimizer.zero_grad()
            loss.backward()
            # clip_grad_norm_(params, clip), folded into the fused optimizer's update; the
            # embedding's part of the norm over the batch's words only
            clip_and_step(optimizer, params, clip, (embedding, data) if sparse_embedding else None)
            lr = scheduler.get_last_lr()[0]  # the learning rate of this step
            scheduler.step()  # after every batch: the warm-up and the schedule count steps
            log.add(batch, loss, lr)  # the sum stays on the device; the line every log_interval
    return log.close()


@dataclass
class FitResult:
    """What fit returns: the best model (a copy), the per-epoch history and how the run ended."""

    best_model: nn.Module | None
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    train_seconds: float = 0.0
    interrupted: bool = False
    # what a checkpoint needs besides the model (see checkpoint_state)
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    scheduler: object = field(default=None, repr=False)

    def add_epoch(self, **row: float) -> None:
        """Record an epoch's row (its validation perplexity added)."""
        row["val_ppl"] = perplexity(row["val_loss"])
        self.history.append(row)


def fit(
    model, train_data, val_data, hp, progress=None, on_epoch_end=None, resume=None
) -> FitResult:
    """The given epoch loop, completed: train() then evaluate() every epoch, the best model kept.

    on_epoch_end(result) is called after every epoch. Ctrl-C stops training and returns the best
    model and history so far (interrupted=True). resume, a checkpoint_state of an earlier run with
    the same hyper-parameters, continues it after its last epoch as if it had never stopped.
    """
    amp_dtype = autocast_dtype(train_data.device, hp.precision)
    criterion = nn.CrossEntropyLoss()
    ntokens = model.decoder.out_features
    optimizer = make_optimizer(model, hp)
    batches_per_epoch = count_batches(train_data, hp.bptt, hp.max_train_batches)
    scheduler = make_scheduler(optimizer, hp, batches_per_epoch)
    result = FitResult(best_model=None, optimizer=optimizer, scheduler=scheduler)
    first_epoch = 1 if resume is None else restore_checkpoint(resume, model, result) + 1
    fit_start = time.time() - result.train_seconds
    epochs = hp.epochs  # completed
    try:
        for epoch in range(first_epoch, epochs + 1):
            epoch_start_time = time.time()
            rows = epoch_slice(train_data, epoch, hp.max_train_batches, hp.bptt)
            train_loss = train(  # completed: train() with this run's recipe
                model,
                hp.bptt,
                rows,
                criterion,
                ntokens,
                optimizer,
                scheduler,
                epoch,
                hp.log_interval,
                clip=hp.clip,
                amp_dtype=amp_dtype,
                shuffle=hp.shuffle_batches,
                random_offset=hp.random_offset,
                max_batches=hp.max_train_batches,
                progress=progress,
            )
            val_loss = evaluate(model, val_data, hp.bptt, criterion, amp_dtype, hp.max_eval_batches)
            seconds = time.time() - epoch_start_time
            print("-" * 89)
            print(
                f"| end of epoch {epoch:3d} | time: {seconds:5.2f}s | valid loss {val_loss:5.2f} | "
                f"valid ppl {perplexity(val_loss):8.2f}"
            )
            print("-" * 89, flush=True)

            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch = val_loss, epoch
                # a copy: the given `best_model = model` is the training model itself (best = last)
                result.best_model = copy.deepcopy(model)
            lr = scheduler.get_last_lr()[0]  # stepped after every batch, not once an epoch
            result.add_epoch(
                epoch=epoch, train_loss=train_loss, val_loss=val_loss, lr=lr, seconds=seconds
            )
            result.train_seconds = time.time() - fit_start
            if on_epoch_end is not None:
                on_epoch_end(result)
    except KeyboardInterrupt:
        result.interrupted = True
        result.train_seconds = time.time() - fit_start
        print(f"Interrupted: keeping the best model so far (epoch {result.best_epoch}).")
    return result


class EpochWeights:
    """A fit callback that keeps a CPU copy of the model's weights after every epoch (for the
    sentences over the epochs in Task 5)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.states: dict[int, dict[str, Tensor]] = {}

    def __call__(self, result: FitResult) -> None:
        state = self.model.state_dict()
        self.states[result.history[-1]["epoch"]] = {
            name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()
        }


def checkpoint_state(model: nn.Module, result: FitResult) -> dict:
    """Everything `fit(..., resume=...)` needs to continue a run after its last finished epoch."""
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
    """Load a `checkpoint_state` into the model, the result's optimizer and scheduler;
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
    and plain values, so `torch.load(..., weights_only=True)` reads it (no pickled NumPy
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


if __name__ == "__main__":  # hw3 imports only hw3: the command line is in hw3tools.train
    sys.exit("the training command line is: python -m hw3tools.train --help")
