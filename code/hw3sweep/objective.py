"""What a study minimises, and how a trial's figures are read back from it.

- **Perplexity** (the default): one objective, the best validation perplexity of a run of the
  budget's length. The pruner may stop a trial after any epoch.
- **Time-aware** (``--time-aware``): two objectives, Optuna's multi-objective search over the best
  validation perplexity and the training batches the run took; the run's length (``epochs``, up to
  the budget's) is searched with the rest. Optuna cannot prune a multi-objective trial (its
  ``Trial.report`` is single-objective only), so every trial runs to its end. The Pareto front is
  the report's answer; the chosen configuration is the one with the fewest batches whose validation
  perplexity reaches the study's target (today's, by default the baseline trial's).

The test split plays no part in either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hw3tools.studies import HPARAMS_ATTR
from optuna.trial import FrozenTrial

TIME_AWARE_ATTR = "time_aware"  # study user attribute: True for the two-objective study
TARGET_ATTR = "target"  # study user attribute: the validation perplexity to reach (time-aware)
# study user attribute: the searched settings of the baseline, the budget's own when the study
# started (they stay its baseline when the code's defaults change later)
BASELINE_ATTR = "baseline"
# trial user attribute: the training batches the run took, as its schedule counts them (an epoch's
# batches times the epochs; an epoch that starts at a random row may train one batch fewer)
BATCHES_ATTR = "batches"
SEED_ATTR = "enqueued_seed"  # an enqueued trial's user attribute: train with this seed (a repeat)


def directions(time_aware: bool) -> list[str]:
    return ["minimize", "minimize"] if time_aware else ["minimize"]


def describe(time_aware: bool) -> str:
    if time_aware:
        return "validation perplexity (best epoch) and training batches, both lower is better"
    return "validation perplexity (best epoch)"


def validation_ppl(trial: FrozenTrial) -> float | None:
    """The trial's best validation perplexity: its value, or its first value in a two-objective
    study (None while it has none)."""
    return trial.values[0] if trial.values else None


def trained_batches(trial: FrozenTrial) -> int | None:
    """The training batches the trial's run took (None where it was not recorded)."""
    if trial.values and len(trial.values) > 1:
        return int(trial.values[1])
    batches = trial.user_attrs.get(BATCHES_ATTR)
    return None if batches is None else int(batches)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials (with values) that no other dominates, fewest batches first."""
    scored = [t for t in trials if t.values]
    front = [t for t in scored if not any(dominates(o.values, t.values) for o in scored)]
    return sorted(front, key=lambda t: (list(reversed(t.values)), t.number))


def baseline_params(study: optuna.Study) -> dict[str, Any] | None:
    """The baseline's searched settings: as the study recorded them when it started, or, in a study
    from before that record, its trial 0 (the first one it enqueued). Not the code's defaults of
    today: those move when a study's choice becomes the full profile."""
    if BASELINE_ATTR in study.user_attrs:
        return study.user_attrs[BASELINE_ATTR]
    first = study.get_trials(deepcopy=False)
    return first[0].params if first else None


def configuration_key(trial: FrozenTrial) -> tuple:
    """A trial's complete settings without its seed: the trials of one configuration share it."""
    settings = dict(trial.user_attrs.get(HPARAMS_ATTR) or trial.params)
    settings.pop("seed", None)
    return tuple(sorted(settings.items()))


def weights_to_keep(values: Mapping[int, Sequence[float]], configurations: Mapping[int, tuple]) -> set[int]:
    """The trials (by number) whose weights a machine keeps for the report's one test evaluation:
    those no other beats (the best; in a two-objective study, the Pareto front) and every trial of
    the same configuration as one of them. The report chooses a configuration and evaluates its
    default seed's trial, which a second seed can beat without making it any less the choice."""
    leading = {n for n, v in values.items() if not any(dominates(other, v) for other in values.values())}
    chosen = {configurations[n] for n in leading}
    return {n for n in values if configurations[n] in chosen}
