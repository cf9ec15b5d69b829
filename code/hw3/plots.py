"""Task 4's figure: training and validation loss and perplexity per epoch,
the test result marked."""

import math

import matplotlib.pyplot as plt

from hw3.files import write_atomic


def plot_history(history, test_loss=None, best_epoch=None, path=None, dpi=150):
    """Two panels (loss, perplexity) of ``history`` rows
    ``{"epoch", "train_loss", "val_loss", ...}``.

    The test loss/perplexity (of the best model) is drawn as a marker at the best epoch. When
    ``path`` is given the figure is saved there as PNG (written to a temporary name, then renamed).
    Returns the matplotlib figure.
    """
    epochs = [row["epoch"] for row in history]
    train_loss = [row["train_loss"] for row in history]
    val_loss = [row["val_loss"] for row in history]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, transform, name in ((ax_loss, lambda x: x, "loss"), (ax_ppl, math.exp, "perplexity")):
        ax.plot(epochs, [transform(x) for x in train_loss], "o-", label=f"train {name}")
        ax.plot(epochs, [transform(x) for x in val_loss], "s-", label=f"validation {name}")
        if test_loss is not None:
            at = best_epoch if best_epoch is not None else epochs[-1]
            value = transform(test_loss)
            ax.plot(
                [at], [value], "r*", markersize=14, label=f"test {name} (best model): {value:.2f}"
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_ppl.set_yscale("log")
    fig.tight_layout()
    if path is not None:
        write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    return fig
