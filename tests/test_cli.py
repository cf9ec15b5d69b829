"""The training command line (``python -m hw3tools.train``, ``hw3tools.train``): overrides, outputs, resume."""

import math

import pytest
import torch
from hw3.hparams import HParams
from hw3.metrics import read_metrics
from hw3.model import TransformerModel
from hw3tools.train import main, parse_override


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("lr=5e-3", ("lr", 5e-3)),
        ("epochs=12", ("epochs", 12)),
        ("norm_first=False", ("norm_first", False)),
        ("random_offset=true", ("random_offset", True)),
        ("shuffle_batches=FALSE", ("shuffle_batches", False)),
        ("optimizer=RAdam", ("optimizer", "RAdam")),
    ],
)
def test_set_override_values_are_parsed(item: str, expected: tuple) -> None:
    assert parse_override(item) == expected
    assert type(parse_override(item)[1]) is type(expected[1])


def test_cli_refuses_bad_hparams_before_loading_data(tmp_path, capsys) -> None:
    missing = tmp_path / "no-data-here"
    assert main(["--data-dir", str(missing), "--out", str(tmp_path), "--set", "lr=10"]) == 2
    err = capsys.readouterr().err
    assert "lr=10" in err and "[0.005, 5]" in err and "no-data-here" not in err
    assert not (tmp_path / "metrics.json").exists()


def test_cli_keeps_every_repeated_set_override(tmp_path, capsys) -> None:
    missing = tmp_path / "no-data-here"
    # the bad value comes first: if a later --set replaced the earlier ones, lr=10 would be lost and the run
    # would get as far as the missing data folder
    assert main(["--data-dir", str(missing), "--set", "lr=10", "--set", "epochs=1", "dropout=0.1"]) == 2
    err = capsys.readouterr().err
    assert "lr=10" in err and "no-data-here" not in err


@pytest.mark.e2e
def test_cli_trains_and_writes_metrics_and_weights(real_data_dir, tmp_path) -> None:
    args = ["--profile", "quick", "--data-dir", str(real_data_dir), "--out", str(tmp_path), "--threads", "1",
            "--set", "epochs=1", "max_train_batches=3", "max_eval_batches=2", "warmup_batches=1"]  # fmt: skip
    assert main(args) == 0
    metrics = read_metrics(tmp_path / "metrics.json")
    assert metrics["hparams"]["max_train_batches"] == 3 and metrics["data"]["vocab_size"] == 28782
    assert [row["epoch"] for row in metrics["history"]] == [1]
    assert metrics["best_epoch"] == 1 and math.isfinite(metrics["test_ppl"])
    assert len(metrics["sentences"]) == 3 and all(len(s.split(" ")) == 20 for s in metrics["sentences"])
    state = torch.load(tmp_path / "best_model.pt", weights_only=True)
    hp = HParams.from_dict(metrics["hparams"])
    model = TransformerModel(28782, hp.emsize, hp.nhead, hp.nhid, hp.nlayers, hp.dropout, hp.norm_first)
    model.load_state_dict(state)
    assert not list(tmp_path.glob("*.tmp"))
    assert (tmp_path / "loss_ppl.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_cli_resume_continues_a_stopped_run(real_data_dir, tmp_path, monkeypatch, capsys) -> None:
    import hw3.train as train_module

    args = ["--profile", "quick", "--data-dir", str(real_data_dir), "--out", str(tmp_path), "--threads", "1",
            "--set", "epochs=2", "max_train_batches=2", "max_eval_batches=2", "warmup_batches=1"]  # fmt: skip
    assert main([*args, "--resume"]) == 2 and "no checkpoint" in capsys.readouterr().err
    real_train, calls = train_module.train, []

    def stopped_in_epoch_two(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*a, **k)

    monkeypatch.setattr(train_module, "train", stopped_in_epoch_two)
    assert main(args) == 130  # Ctrl-C in epoch 2: epoch 1 is kept, and its checkpoint
    monkeypatch.setattr(train_module, "train", real_train)
    assert main([*args[:-3], "max_train_batches=3", *args[-2:], "--resume"]) == 2  # other hyper-parameters
    assert "other hyper-parameters (max_train_batches: 2 there, 3 now)" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    metrics = read_metrics(tmp_path / "metrics.json")
    assert [row["epoch"] for row in metrics["history"]] == [1, 2] and not metrics["interrupted"]


@pytest.mark.e2e
def test_cli_interrupted_in_the_test_pass_keeps_history_and_weights(
    real_data_dir, tmp_path, monkeypatch, capsys
) -> None:
    import hw3.train as train_module
    import hw3tools.train as cli_module

    real_evaluate, calls = train_module.evaluate, []

    def interrupted_at_test(*a, **k):  # the first call validates epoch 1, the second is the test pass
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(train_module, "evaluate", interrupted_at_test)  # validation, inside fit
    monkeypatch.setattr(cli_module, "evaluate", interrupted_at_test)  # the test pass
    args = ["--profile", "quick", "--data-dir", str(real_data_dir), "--out", str(tmp_path),
            "--threads", "1", "--set", "epochs=1", "max_train_batches=2", "max_eval_batches=2",
            "warmup_batches=1"]  # fmt: skip
    assert main(args) == 130
    assert "Interrupted after training" in capsys.readouterr().err
    metrics = read_metrics(tmp_path / "metrics.json", finished=False)
    assert len(metrics["history"]) == 1 and "test_ppl" not in metrics
    assert (tmp_path / "best_model.pt").exists()
