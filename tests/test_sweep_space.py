"""The search space is the box HParams validates against: every sampled configuration is valid, the
conditions hold, and a range changed in hw3.hparams changes both what is accepted and what is searched."""

from __future__ import annotations

import optuna
import pytest
from hw3 import hparams
from hw3.hparams import BOX, Bounds, HParams, emsize_step
from hw3sweep.budgets import BUDGETS, get_budget
from hw3sweep.space import space_params, suggest_hparams


def sample(n: int, base: HParams | None = None, fixed: dict | None = None) -> list[tuple[dict, HParams]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=211))
    out = []
    for _ in range(n):
        trial = study.ask()
        hp = suggest_hparams(trial, base or get_budget("proxy").base(), fixed or {})
        out.append((trial.params, hp))
        study.tell(trial, 1.0)
    return out


def test_every_sampled_configuration_is_valid_and_within_the_search_ranges() -> None:
    seen = {"optimizer": set(), "nhead": set(), "scheduler": set()}
    for params, hp in sample(300):
        assert HParams.from_dict(hp.to_dict()) == hp  # validates again
        for name, value in params.items():
            bounds = BOX[name]
            if isinstance(bounds, Bounds):
                low, high = bounds.search or (bounds.low, bounds.high)
                assert low <= value <= high, (name, value)
            else:
                assert value in bounds
        assert ("adam_beta2" in params) == (hp.optimizer in ("Adam", "RAdam"))
        assert ("step_gamma" in params) == (hp.scheduler == "step")
        assert hp.emsize % emsize_step(hp.nhead) == 0
        assert hp.lr * hp.weight_decay <= hparams.MAX_DECAY_PER_STEP * (1 + 1e-9)
        assert hp.max_train_batches == 1000 and hp.epochs == 3  # the budget's, not searched
        for key in seen:
            seen[key].add(getattr(hp, key))
    assert seen["optimizer"] == {"SGD", "Adam", "RAdam"} and seen["nhead"] == {2, 3, 4}
    assert len(seen["scheduler"]) == 4


def test_a_range_changed_in_hparams_changes_the_space_and_the_validation(monkeypatch) -> None:
    monkeypatch.setitem(BOX, "dropout", Bounds(0.0, 0.2))
    monkeypatch.setitem(BOX, "nhid", Bounds(240, 250))
    for params, hp in sample(40):
        assert 0.0 <= params["dropout"] <= 0.2 and 240 <= hp.nhid <= 250
    with pytest.raises(ValueError, match=r"dropout=0.25 is outside the allowed range \[0, 0.2\]"):
        HParams(dropout=0.25)
    with pytest.raises(ValueError, match=r"nhid=230 is outside the allowed range \[240, 250\]"):
        HParams(nhid=230)


def test_fixed_values_are_not_searched() -> None:
    fixed = {"optimizer": "SGD", "weight_decay": 0.0}
    for params, hp in sample(20, get_budget("quick").base(fixed), fixed):
        assert "optimizer" not in params and hp.optimizer == "SGD" and "adam_beta1" not in params


def test_a_known_configuration_fits_the_space() -> None:
    """The importer's view (whole ranges) and the sampler's agree: same names, values contained."""
    for params, hp in sample(50):
        known, distributions = space_params(hp)
        assert known == params
        for name, value in known.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value))


def test_budgets_start_from_their_profile() -> None:
    assert BUDGETS["full"].base() == hparams.profile_defaults("full")
    assert BUDGETS["quick"].base() == hparams.profile_defaults("quick")
    assert BUDGETS["proxy"].base().max_train_batches == 1000
    with pytest.raises(ValueError, match="choose one of"):
        get_budget("huge")
