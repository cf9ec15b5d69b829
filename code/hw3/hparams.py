"""The hyper-parameters of Tasks 3-4 as one typed, validated object.

Every value is checked against the box the assignment allows (embedding and hidden size 200-250,
layers and heads 2-4, dropout 0-0.3, SGD/Adam/RAdam, learning rate 5e-3-5.0, bptt 35, batch 20/10,
clip 0.5) when the object is built, so a bad configuration is refused before any data is loaded.

Learning-rate schedule: one multiplier per optimizer step (`scheduler.step()` after every batch):
a linear warm-up over `warmup_batches` steps, times
  - `"step"`:     `step_gamma ** epoch` (the assignment's `StepLR(optimizer, 1.0, gamma=0.95)`
                    stepped once per epoch, expressed per batch),
  - `"cosine"`:   half a cosine from the peak `lr` down to zero at the last batch of the
                    last epoch,
  - `"invsqrt"`:  the peak `lr` at the end of the warm-up, then
                    `lr * sqrt(warmup_batches / step)` (the schedule of
                    "Attention Is All You Need"),
  - `"constant"`: the peak `lr` throughout,
and over the last `cooldown` fraction of all batches, a linear fall to zero
(a final annealing phase).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("SGD", "Adam", "RAdam")
SCHEDULERS = ("step", "cosine", "invsqrt", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
PROFILES = ("quick", "full")
# The largest fraction weight decay may take off a weight in one step (lr * weight_decay): at 1% a
# weight with no gradient halves in 70 steps; beyond it the decay, not the data, sets the weights.
MAX_DECAY_PER_STEP = 0.01


@dataclass(frozen=True)
class Bounds:
    """The values a numeric field may take, [low, high]. A tuner searches the part `search`
    (None: all of it), on a log scale when `log` is true."""

    low: float
    high: float
    log: bool = False
    search: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        low, high = self.search or (self.low, self.high)
        if not self.low <= low <= high <= self.high:
            raise ValueError(
                f"search range {self.search} must lie inside [{self.low}, {self.high}]"
            )


# The box every configuration must lie in, declared once: HParams refuses anything outside it and
# the tuner (hw3sweep) searches it. The assignment's ranges and choices first, then our own knobs
# (their allowed range, and the part worth searching).
BOX: dict[str, Bounds | tuple] = {
    "emsize": Bounds(200, 250),  # a multiple of emsize_step(nhead) as well
    "nhid": Bounds(200, 250),
    "nlayers": Bounds(2, 4),
    "nhead": Bounds(2, 4),
    "dropout": Bounds(0.0, 0.3),
    "norm_first": (True, False),
    "optimizer": OPTIMIZERS,
    "lr": Bounds(5e-3, 5.0, log=True),  # lr * weight_decay <= MAX_DECAY_PER_STEP as well
    "scheduler": SCHEDULERS,
    "adam_beta1": Bounds(0.0, 0.999999, search=(0.8, 0.95)),
    "adam_beta2": Bounds(0.0, 0.999999, search=(0.95, 0.9995)),
    "weight_decay": Bounds(0.0, 1.0, search=(0.0, 0.5)),
    "warmup_batches": Bounds(0, 1_000_000, search=(0, 500)),
    "step_gamma": Bounds(0.01, 1.0, search=(0.8, 1.0)),
    "cooldown": Bounds(0.0, 1.0, search=(0.0, 0.5)),
}
# fixed by the assignment
FIXED = {"bptt": 35, "batch_size": 20, "eval_batch_size": 10, "clip": 0.5}


def emsize_step(nhead: int) -> int:
    """emsize must be a multiple of this: of nhead (each head takes emsize / nhead columns) and
    of 2 (the given PositionalEncoding sets the even columns to sines, the odd ones to cosines)."""
    return math.lcm(2, nhead)


@dataclass(frozen=True)
class HParams:
    """All hyper-parameters of the model, the optimizer, the schedule and the training loop."""

    # model (Task 3)
    emsize: int = 250  # embedding size, [200, 250]
    nhid: int = 250  # hidden units of each encoder layer's feed-forward block, [200, 250]
    nlayers: int = 4  # encoder layers, [2, 4]
    nhead: int = 2  # attention heads, [2, 4], emsize divisible by nhead
    dropout: float = 0.0  # [0.0, 0.3]
    norm_first: bool = True  # False = post-LayerNorm, True = pre-LayerNorm
    # True = the decoder reuses the embedding matrix (train.tie_weights; the class is unchanged)
    tie_weights: bool = False
    # optimizer and schedule
    optimizer: str = "Adam"  # SGD | Adam | RAdam
    lr: float = 5e-3  # peak learning rate, [5e-3, 5.0]
    adam_beta1: float = 0.9  # Adam/RAdam only
    adam_beta2: float = 0.999  # Adam/RAdam only
    weight_decay: float = 0.3  # on weight matrices and embeddings (not biases, LayerNorm gains)
    # Adam/RAdam: shrink the weights by lr * weight_decay a step (the AdamW form), not an L2 term;
    # plain SGD is the same either way (its L2 term shrinks by lr * weight_decay)
    decoupled_weight_decay: bool = True
    scheduler: str = "invsqrt"  # step | cosine | invsqrt | constant (see the module docstring)
    warmup_batches: int = 100  # linear warm-up steps (0 = none)
    step_gamma: float = 0.95  # per-epoch decay of the "step" scheduler
    cooldown: float = 0.4  # fraction of the run, at its end, over which the lr falls linearly to 0
    # training loop (Task 4)
    epochs: int = 3
    shuffle_batches: bool = True  # visit the bptt chunks in a seeded random order; False = in order
    # start each epoch's chunks at a seeded random row in [0, bptt); False = row 0
    random_offset: bool = True
    bptt: int = 35
    batch_size: int = 20
    eval_batch_size: int = 10
    clip: float = 0.5  # gradient-norm clipping
    seed: int = 211
    max_train_batches: int | None = None  # batches per epoch; None = the full epoch
    max_eval_batches: int | None = None  # batches of valid/test evaluated; None = the whole split
    log_interval: int = 200  # batches between log lines
    precision: str = "auto"  # auto (bf16 where the hardware has it, else fp32) | fp32 | bf16

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(
                self, field.name, _coerce(field.name, field.type, getattr(self, field.name))
            )
        for name, allowed in BOX.items():
            if isinstance(allowed, Bounds):
                _check_range(name, getattr(self, name), allowed.low, allowed.high)
            else:
                _check_choice(name, getattr(self, name), allowed)
        for name, required in FIXED.items():
            _check_fixed(name, getattr(self, name), required)
        if self.emsize % emsize_step(self.nhead) != 0:
            raise ValueError(
                f"emsize={self.emsize} must be divisible by nhead={self.nhead} and even "
                f"(a multiple of {emsize_step(self.nhead)}: the heads split the embedding, and "
                f"the positional encoding fills its columns in sin/cos pairs)"
            )
        # the tolerance: 0.05 * 0.2 is 0.010000000000000002 in floats, and exactly 1% is allowed
        if self.lr * self.weight_decay > MAX_DECAY_PER_STEP * (1 + 1e-9):
            raise ValueError(
                f"weight_decay={self.weight_decay:g} at lr={self.lr:g} shrinks every weight matrix "
                f"by {self.lr * self.weight_decay:.1%} a step "
                f"(lr * weight_decay must be <= {MAX_DECAY_PER_STEP:g}); "
                f"set weight_decay <= {MAX_DECAY_PER_STEP / self.lr:.2g} (the default "
                f"{HParams.weight_decay:g} is tuned for Adam at lr 5e-3; with SGD at lr 5.0 use "
                f"e.g. weight_decay = 0)"
            )
        _check_range("epochs", self.epochs, 1, 1000)
        _check_range("seed", self.seed, 0, 2**63 - 1)
        if self.max_train_batches is not None:
            _check_range("max_train_batches", self.max_train_batches, 1, 10_000_000)
        if self.max_eval_batches is not None:
            _check_range("max_eval_batches", self.max_eval_batches, 1, 10_000_000)
        _check_range("log_interval", self.log_interval, 1, 1_000_000)
        _check_choice("precision", self.precision, PRECISIONS)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HParams:
        """Build from a dict; unknown keys are refused (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> HParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def scheduler_description(self) -> str:
        """The learning-rate schedule in words (only the settings it uses)."""
        warm = (
            f"linear warm-up over {self.warmup_batches} batches, then "
            if self.warmup_batches
            else ""
        )
        shape = {
            "step": f"x{self.step_gamma:g} after every epoch (StepLR, gamma={self.step_gamma:g})",
            "cosine": "a cosine decay to 0 at the last batch",
            "invsqrt": f"lr * sqrt({max(self.warmup_batches, 1)} / step) (inverse square root)",
            "constant": "constant",
        }[self.scheduler]
        cool = (
            f", linearly to 0 over the last {self.cooldown:.0%} of the batches"
            if self.cooldown
            else ""
        )
        return f"{warm}{shape}{cool}; stepped after every batch"

    def optimizer_description(self) -> str:
        """The optimizer in words and as the call that builds it (only the settings it uses)."""
        if self.optimizer == "SGD":
            form = "plain SGD" + (" with weight decay" if self.weight_decay else "")
            call = f"torch.optim.SGD(lr={self.lr:g}, weight_decay={self.weight_decay:g})"
            return f"{form}: {call}"
        decay = ""
        if self.weight_decay and self.decoupled_weight_decay:
            form = "AdamW" if self.optimizer == "Adam" else "decoupled"
            decay = f" with decoupled weight decay (the {form} form)"
        elif self.weight_decay:
            decay = " with L2 weight decay"
        call = (
            f"torch.optim.{self.optimizer}(lr={self.lr:g}, "
            f"betas=({self.adam_beta1:g}, {self.adam_beta2:g}), weight_decay={self.weight_decay:g}"
            + (", decoupled_weight_decay=True)" if self.decoupled_weight_decay else ")")
        )
        return f"{self.optimizer}{decay}: {call}"

    def describe(self, run: dict[str, Any] | None = None) -> str:
        """Every hyper-parameter that applies, one per line (Task 3 asks to print all of them), and
        with run (hw3.train.resolved_run) the device and the precision that ran."""
        full = self.max_train_batches is None and self.max_eval_batches is None
        rows: list[tuple[str, Any]] = [
            ("embedding size (emsize)", self.emsize),
            ("hidden units (nhid)", self.nhid),
            ("encoder layers (nlayers)", self.nlayers),
            ("attention heads (nhead)", self.nhead),
            ("dropout", f"{self.dropout:g}"),
            (
                "LayerNorm",
                "pre (norm_first=True)" if self.norm_first else "post (norm_first=False)",
            ),
            ("decoder weights", "tied to the embedding" if self.tie_weights else None),
            ("loss criterion", "nn.CrossEntropyLoss()"),
            ("optimizer", self.optimizer_description()),
            (
                "weight decay applies to",
                "weight matrices and embeddings" if self.weight_decay else None,
            ),
            ("learning rate (peak)", f"{self.lr:g}"),
            ("scheduler", self.scheduler_description()),
            ("epochs", self.epochs),
            ("bptt", self.bptt),
            ("batch size (train, eval)", f"{self.batch_size}, {self.eval_batch_size}"),
            ("gradient clipping (max norm)", f"{self.clip:g}"),
            ("batch order", "shuffled every epoch" if self.shuffle_batches else None),
            (
                "chunk boundaries",
                "from a random row in [0, bptt) every epoch" if self.random_offset else None,
            ),
            ("draft run", None if full else self._draft_description()),
            ("seed", self.seed),
        ]
        if run is not None:
            cpu = run["device"] == "cpu"
            rows += [
                (
                    "device",
                    run["device_name"] if cpu else f"{run['device']} ({run['device_name']})",
                ),
                ("precision", f"{run['precision']} ({run['precision_why']})"),
            ]
        rows = [(name, value) for name, value in rows if value is not None]
        width = max(len(name) for name, _ in rows)
        lines = []
        for name, value in rows:  # values wrapped to 100 columns, under their column
            wrapped = textwrap.wrap(str(value), 100 - width - 3) or [""]
            lines.append(f"{name:<{width}} : " + ("\n" + " " * (width + 3)).join(wrapped))
        return "\n".join(lines)

    def _draft_description(self) -> str:
        train, evaluate = self.max_train_batches or "all", self.max_eval_batches or "all"
        return f"{train} training batches per epoch, {evaluate} batches of valid/test evaluated"

    def __str__(self) -> str:
        return self.describe()


def profile_defaults(profile: str) -> HParams:
    """The hyper-parameters of a profile: `full` is the submission, `quick` a minutes-long draft.

    `full` (the class defaults) is the largest model the box allows (emsize = nhid = 250, 4 layers,
    2 heads), no dropout, pre-LayerNorm, Adam (betas 0.9, 0.999) with decoupled weight decay 0.3
    on the weight matrices and embeddings, at the lowest peak lr the box allows (5e-3) after 100
    warm-up batches, then an inverse square-root decay and, over the last 40% of the 3 epochs, a
    linear fall to zero; each epoch cuts the text at a seeded random row in [0, 35) and visits the
    chunks in a seeded random order. It is the time-aware study's choice: the fewest training
    batches whose validation perplexity (mean of two seeds) reaches that of the 4-epoch profile
    before it (docs/tuning_fewer_batches.md; docs/tuning.md has the trials before it).
    """
    if profile == "full":
        return HParams()
    if profile == "quick":
        # a few hundred batches on a slice of the data: the whole build fits in minutes on a CPU
        return HParams(
            epochs=2, max_train_batches=150, max_eval_batches=60, warmup_batches=50, log_interval=50
        )
    raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Accept ints where floats are expected (a notebook parameter `lr = 5` for `5.0`);
    refuse wrong types."""
    # real types when the class is defined without postponed annotations
    if not isinstance(annotation, str):
        annotation = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return value
    if annotation in ("int", "int | None"):
        if value is None and annotation == "int | None":
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value
    if annotation == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is outside the allowed range [{low:g}, {high:g}]")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(choices)}")


def _check_fixed(name: str, value: float, required: float) -> None:
    if value != required:
        raise ValueError(
            f"{name}={value!r} is outside the allowed range: "
            f"the assignment fixes {name} = {required:g}"
        )
