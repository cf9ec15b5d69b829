"""What ``python -m hw3sweep`` prints while its workers run: each running trial's epochs as they
end, trials finished by an earlier run marked as such, and a time left only once it can be known."""

from __future__ import annotations

import datetime

import optuna
from hw3sweep import cli
from optuna.trial import TrialState, create_trial

HP = {"epochs": 3}


def trial(number: int, state: TrialState, history: list[dict], value: float | None = None):
    made = create_trial(
        state=state,
        value=value,
        user_attrs={"history": history, cli.HPARAMS_ATTR: HP},
    )
    made.number = number
    if state.is_finished():
        made.datetime_start = datetime.datetime(2026, 12, 6, 12, 0)
        made.datetime_complete = datetime.datetime(2026, 12, 6, 12, 20)
    return made


def rows(*ppls: float) -> list[dict]:
    return [{"epoch": i + 1, "val_ppl": p} for i, p in enumerate(ppls)]


class Frames:
    """A study whose trials change from one look to the next, as the workers write them."""

    study_name = "watched"

    def __init__(self, frames: list[list]) -> None:
        self.frames = frames
        self.looks = 0

    def get_trials(self, deepcopy: bool = False) -> list:
        frame = self.frames[min(self.looks, len(self.frames) - 1)]
        self.looks += 1
        return frame


class Worker:
    """A worker process that runs for ``polls`` looks, then exits with 0."""

    args = ["worker", "0"]

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.returncode = None

    def poll(self) -> int | None:
        self.polls -= 1
        if self.polls < 0:
            self.returncode = 0
        return self.returncode


def test_the_watch_prints_epochs_and_marks_earlier_trials(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(cli, "POLL_S", 0)
    before = trial(0, TrialState.COMPLETE, rows(170.0, 150.0, 140.0), 140.0)
    frames = [
        [before, trial(1, TrialState.RUNNING, [])],
        [before, trial(1, TrialState.RUNNING, rows(171.5))],
        [before, trial(1, TrialState.RUNNING, rows(171.5, 149.25))],
        [before, trial(1, TrialState.COMPLETE, rows(171.5, 149.25, 139.0), 139.0)],
    ]
    status = cli.watch(Frames(frames), [(Worker(polls=3), tmp_path / "w.log")], target=3)
    out = capsys.readouterr().out.splitlines()
    assert status == 0  # short of the target with no failure: the workers stopped (a timeout)
    assert "(finished before this run)" in out[0] and "trial   0" in out[0]
    assert "min left" not in out[0]
    assert out[1] == "trial   1 epoch 1/3: validation ppl 171.5"
    assert out[2] == "trial   1 epoch 2/3: validation ppl 149.2"
    # the epochs of the finished trial are not printed again; its end carries the time left
    assert out[3].startswith("trial   1 COMPLETE") and "2/3 done, ~" in out[3] and "min left" in out[3]
    assert len(out) == 5 and out[4] == "study 'watched': 2 of 3 trials finished"


def test_a_real_study_joined_again_lists_its_trials_without_a_time_left(capsys, tmp_path) -> None:
    study = optuna.create_study()
    study.add_trial(trial(0, TrialState.COMPLETE, rows(150.0), 150.0))
    assert cli.watch(study, [], target=1) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("trial   0 COMPLETE") and out[0].endswith("(finished before this run)")
    assert out[1:] == [f"study {study.study_name!r}: 1 of 1 trials finished"]
