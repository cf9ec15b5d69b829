"""Task 4's figure takes every perplexity through hw3.metrics.perplexity, as the table does."""

from __future__ import annotations

import math
from pathlib import Path

from hw3.plots import plot_history


def test_a_diverged_epoch_is_plotted_not_an_overflow(tmp_path: Path) -> None:
    """A validation loss past exp's range (a diverged epoch, recorded with an infinite perplexity) made
    math.exp raise OverflowError in the figure after training had finished."""
    history = [
        {"epoch": 1, "train_loss": 6.0, "val_loss": 5.5},
        {"epoch": 2, "train_loss": 5.0, "val_loss": 800.0},
    ]
    fig = plot_history(history, test_loss=5.4, best_epoch=1, path=tmp_path / "loss_ppl.png")
    ppl_line = fig.axes[1].lines[1]  # the validation perplexity
    assert ppl_line.get_ydata()[0] == math.exp(5.5) and math.isinf(ppl_line.get_ydata()[1])
    assert (tmp_path / "loss_ppl.png").read_bytes()[:4] == b"\x89PNG"
