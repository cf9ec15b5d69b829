"""The search space: the box declared in :data:`hw3.hparams.BOX`, searched define-by-run.

One walk through the box (:func:`_walk`) states the conditions once, and serves both sides:

- :func:`suggest_hparams` asks an Optuna trial for each value (``trial.suggest_*``);
- :func:`space_params` gives the Optuna parameters and distributions of a known configuration (the
  importer of earlier trials uses it, so they sit in the same space).

The conditions, as Optuna expresses them (a parameter exists only where it applies): Adam's betas
only for Adam and RAdam, ``step_gamma`` only for the ``step`` schedule, ``emsize`` only on the
multiples of ``emsize_step(nhead)`` (so ``nhead`` divides it), and ``weight_decay`` at most
``MAX_DECAY_PER_STEP / lr``.
The box is read when a space is walked, never copied: a range changed in ``hw3.hparams`` changes
what ``HParams`` accepts and what is searched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import hw3.hparams
from hw3.hparams import HParams
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial

# optimizers that take Adam's betas
ADAM_LIKE = ("Adam", "RAdam")
_INT_FIELDS = frozenset(f.name for f in dataclasses.fields(HParams) if f.type in ("int", int))

Pick = Callable[[str, BaseDistribution], Any]


def _walk(pick: Pick, *, search: bool, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Walk the box in dependency order; ``pick(name, distribution)`` chooses each value.

    ``search``: the searched part of each range (a study) or the whole allowed range (importing
    known configurations). A name in ``fixed`` is not picked: its value is used as it is.
    """
    box = hw3.hparams.BOX
    values: dict[str, Any] = {}

    def choose(name: str, distribution: BaseDistribution) -> Any:
        values[name] = fixed[name] if name in fixed else pick(name, distribution)
        return values[name]

    def numeric(name: str, *, high: float = math.inf, step: int | None = None) -> Any:
        bounds = box[name]
        low, top = bounds.search if search and bounds.search else (bounds.low, bounds.high)
        top = min(top, high)
        if name in _INT_FIELDS:
            step = step or 1
            low, top = math.ceil(low / step) * step, math.floor(top / step) * step
            return choose(name, IntDistribution(int(low), int(top), log=bounds.log, step=step))
        return choose(name, FloatDistribution(low, top, log=bounds.log))

    def categorical(name: str) -> Any:
        return choose(name, CategoricalDistribution(list(box[name])))

    optimizer = categorical("optimizer")
    lr = numeric("lr")
    if optimizer in ADAM_LIKE:
        numeric("adam_beta1")
        numeric("adam_beta2")
    numeric("weight_decay", high=hw3.hparams.MAX_DECAY_PER_STEP / lr)
    if categorical("scheduler") == "step":
        numeric("step_gamma")
    numeric("warmup_batches")
    numeric("cooldown")
    numeric("nlayers")
    numeric("nhid")
    numeric("emsize", step=hw3.hparams.emsize_step(numeric("nhead")))
    numeric("dropout")
    categorical("norm_first")
    return values


def suggest_hparams(trial: BaseTrial, base: HParams, fixed: Mapping[str, Any] = {}) -> HParams:  # noqa: B006
    """A configuration from ``trial``: ``base`` (the budget's settings) with every searched field
    suggested, except those in ``fixed``."""

    def pick(name: str, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return trial.suggest_categorical(name, distribution.choices)
        if isinstance(distribution, IntDistribution):
            return trial.suggest_int(
                name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)

    return base.replace(**_walk(pick, search=True, fixed=fixed))


def space_params(hp: HParams) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The Optuna parameters and distributions of a known configuration, on the whole allowed
    ranges (so every valid ``HParams`` fits)."""
    distributions: dict[str, BaseDistribution] = {}

    def pick(name: str, distribution: BaseDistribution) -> Any:
        distributions[name] = distribution
        return getattr(hp, name)

    params = _walk(pick, search=False, fixed={})
    return params, distributions
