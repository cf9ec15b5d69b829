"""The one atomic write (hw3.files) and the one schema of a run's record (hw3.metrics)."""

import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hw3.files import write_atomic, write_json_atomic
from hw3.metrics import METRICS_NAME, MetricsError, check_metrics, metrics_record, read_metrics, write_metrics


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    write_atomic(target, "first")
    write_atomic(target, b"second \xe2\x9c\x93")
    assert target.read_bytes() == b"second \xe2\x9c\x93"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temporary file left


def test_a_failed_write_keeps_the_old_bytes_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    write_atomic(target, b"good")

    def half_then_fail(f) -> None:
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_json_atomic_keeps_non_ascii_readable(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "x.json", {"name": "יוסי כהן"})
    assert "יוסי כהן" in (tmp_path / "x.json").read_text(encoding="utf-8")


@dataclass
class FakeFit:
    history: list = field(
        default_factory=lambda: [
            {
                "epoch": 1,
                "train_loss": 6.0,
                "val_loss": 5.5,
                "val_ppl": math.exp(5.5),
                "lr": 1e-3,
                "seconds": 2.0,
            }
        ]
    )
    best_epoch: int = 1
    best_val_loss: float = 5.5
    interrupted: bool = False
    train_seconds: float = 2.0


def record(**finished) -> dict:
    return metrics_record(
        profile="quick",
        hparams={"lr": 5e-3},
        run={"device": "cpu", "precision": "fp32"},
        data={"vocab_size": 28782},
        fit_result=FakeFit(),
        total_seconds=3.0,
        **finished,
    )


def test_a_finished_record_round_trips(tmp_path: Path) -> None:
    written = record(test_loss=5.0, sentences=["a b"], figures=["figures/loss_ppl.png"])
    path = write_metrics(tmp_path, written)
    assert path == tmp_path / METRICS_NAME
    read = read_metrics(path)
    assert read == json.loads(json.dumps(written))
    assert read["test_ppl"] == pytest.approx(math.exp(5.0)) and read["best_val_ppl"] == pytest.approx(
        math.exp(5.5)
    )


def test_a_record_without_the_test_pass_is_only_read_as_unfinished(tmp_path: Path) -> None:
    path = write_metrics(tmp_path, record())
    assert read_metrics(path, finished=False)["history"]
    with pytest.raises(MetricsError, match="missing 'test_loss'"):
        read_metrics(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace('"schema": 2', '"schema": 1'), "schema 1, expected 2"),
        (lambda text: text.replace('"best_epoch": 1', '"best_epoch": "1"'), "'best_epoch' must be int"),
        (lambda text: text.replace('"interrupted": false', '"interrupted": 0'), "'interrupted' must be bool"),
        (lambda text: text.replace('"val_loss": 5.5,', ""), "history row 1 lacks"),
    ],
)
def test_a_damaged_record_is_refused_with_the_reason(tmp_path: Path, damage, message: str) -> None:
    path = write_metrics(tmp_path, record(test_loss=5.0, sentences=[]))
    path.write_text(damage(path.read_text()))
    with pytest.raises(MetricsError, match=message):
        read_metrics(path)


def test_a_missing_record_and_unknown_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="cannot be read"):
        read_metrics(tmp_path / METRICS_NAME)
    with pytest.raises(MetricsError, match="unknown metrics field"):
        record(test_loss=5.0, sentences=[], colour="red")
    with pytest.raises(MetricsError, match="expected a JSON object"):
        check_metrics([1, 2])


def test_a_diverged_loss_has_an_infinite_perplexity_not_an_error() -> None:
    from hw3.metrics import perplexity
    from hw3.train import FitResult

    assert perplexity(math.log(250.0)) == pytest.approx(250.0)
    assert perplexity(800.0) == math.inf  # math.exp(800) raises OverflowError
    result = FitResult(best_model=None)
    result.add_epoch(epoch=1, train_loss=9.0, val_loss=800.0, lr=1e-3, seconds=1.0)
    assert result.history[0]["val_ppl"] == math.inf
