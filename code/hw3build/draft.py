"""What makes a run a draft: what was run, not the profile's name.

A run is the submission only when it trained as long as the ``full`` profile does: the full profile's
epochs, and every batch of each epoch and of each evaluation. ``profile = "full"`` with
``max_train_batches = 150`` is a draft as much as the ``quick`` profile is. The notebook's header, the
report's cover and ``invoke validate --strict`` all decide with :func:`draft_reasons`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hw3.hparams import profile_defaults

SUBMISSION_PROFILE = "full"
LIMITS = ("max_train_batches", "max_eval_batches")


def draft_reasons(profile: str | None, hparams: Mapping[str, Any]) -> list[str]:
    """Why a run of ``profile`` with ``hparams`` is a draft (empty: it is the submission's run)."""
    full = profile_defaults(SUBMISSION_PROFILE).to_dict()
    reasons = []
    if profile is not None and profile != SUBMISSION_PROFILE:
        reasons.append(f"profile {profile!r}")
    epochs = hparams.get("epochs")
    if isinstance(epochs, int) and epochs < full["epochs"]:
        reasons.append(f"epochs = {epochs} (the full profile trains {full['epochs']})")
    for name in LIMITS:
        value = hparams.get(name)
        if value is not None and (full[name] is None or value < full[name]):
            reasons.append(f"{name} = {value} (the full profile uses every batch)")
    return reasons


def is_draft(profile: str | None, hparams: Mapping[str, Any]) -> bool:
    return bool(draft_reasons(profile, hparams))
