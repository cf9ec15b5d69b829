"""How much each trial of a study trains: a budget names a profile and the length of its run.

The search space sets the model, optimizer and schedule; the budget sets everything else (the
profile's settings, then the run's length), so trials of one study differ only in what is searched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hw3.hparams import HParams, profile_defaults

# The fields a budget owns: they say how long a trial trains, not what it is. A study's settings,
# pasted into submission.toml, leave them out.
LENGTH_FIELDS = ("epochs", "max_train_batches", "max_eval_batches", "log_interval")


@dataclass(frozen=True)
class Budget:
    name: str
    profile: str  # the profile whose settings the trials start from
    length: Mapping[str, Any] = field(default_factory=dict)  # LENGTH_FIELDS changed from it
    description: str = ""

    def base(self, fixed: Mapping[str, Any] = {}) -> HParams:  # noqa: B006
        """The settings every trial starts from: the profile's, the run's length, then ``fixed``
        (a study's ``--set``)."""
        return profile_defaults(self.profile).replace(**{**self.length, **fixed})


BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        "quick", "quick", {}, "the quick profile: 2 epochs of 150 batches, 60 validation batches"
    ),
    "proxy": Budget(
        "proxy",
        "full",
        {"epochs": 3, "max_train_batches": 1000},
        "3 epochs of 1,000 batches (3,000 steps), the whole validation split",
    ),
    "full": Budget("full", "full", {}, "the full profile: every batch of the training split, each epoch"),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of {list(BUDGETS)}")
    return BUDGETS[name]
