"""Task 4's results: the per-epoch table and the figure of loss and perplexity, the test result
marked."""

import matplotlib.pyplot as plt

from hw3.files import write_atomic
from hw3.metrics import perplexity

# The figure is printed at its own size (6.3 x 2.6 inches fit the PDF's text width), so these font
# sizes are the sizes on paper.
FIGURE_SIZE = (6.3, 2.6)
FONT_SIZES = {"font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "legend.fontsize": 8}


def history_table(history, test_loss=None, best_epoch=None) -> str:
    """The history rows as a text table (one line per epoch; the best epoch marked)."""
    lines = [
        f"{'epoch':>5} | {'train loss':>10} | {'valid loss':>10} | {'valid ppl':>9} | lr at end"
    ]
    for row in history:
        mark = "  <- best" if row["epoch"] == best_epoch else ""
        lines.append(
            f"{row['epoch']:5d} | {row['train_loss']:10.3f} | {row['val_loss']:10.3f} | "
            f"{row['val_ppl']:9.2f} | {row['lr']:.2e}{mark}"
        )
    if test_loss is not None:
        lines.append(
            f" test | {'':10} | {test_loss:10.3f} | {perplexity(test_loss):9.2f} | (best model)"
        )
    return "\n".join(lines)


FIGURE_CAPTION = (
    "Task 4's figure: the training and validation loss (left) and perplexity (right, log scale)\n"
    "after each epoch; the dashed line is the test result of the best model."
)


def plot_history(history, test_loss=None, best_epoch=None, path=None, dpi=150):
    """Two panels (loss, perplexity) of the history rows {"epoch", "train_loss", "val_loss", ...}.

    The test loss and perplexity of the best model are a dashed horizontal line (it hides no point
    of the curves); the legend is below the panels, where it covers no curve. With path the figure
    is saved there as PNG (written to a temporary name, then renamed). Returns the figure.
    """
    epochs = [row["epoch"] for row in history]
    train_loss = [row["train_loss"] for row in history]
    val_loss = [row["val_loss"] for row in history]
    with plt.rc_context(FONT_SIZES):
        fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=FIGURE_SIZE, dpi=dpi)
        for ax, transform, name in (
            (ax_loss, lambda x: x, "loss"),
            (ax_ppl, perplexity, "perplexity"),
        ):
            ax.plot(epochs, [transform(x) for x in train_loss], "o-", label="train")
            ax.plot(epochs, [transform(x) for x in val_loss], "s-", label="validation")
            if test_loss is not None:
                value = transform(test_loss)
                ax.axhline(
                    value,
                    color="tab:red",
                    linestyle="--",
                    linewidth=1,
                    label=f"test, best model (epoch {best_epoch}): {value:.2f}",
                )
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{name} (log scale)" if name == "perplexity" else f"{name} (nats)")
            ax.set_title(f"{name} per epoch")
            ax.set_xticks(epochs)
            ax.grid(alpha=0.3)
        ax_ppl.set_yscale("log")
        handles, labels = ax_loss.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        if path is not None:
            write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    return fig
