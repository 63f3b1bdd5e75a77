"""PNG plots of what matters: the soft-label matrix, reconstructions, training curves.

Figures are built with matplotlib's object API on their own Agg canvas: importing reffakd never
switches the process's matplotlib backend, and no pyplot state is kept (nothing to close, nothing
shared between threads).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import torch

from ..io import write_with

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_P = ParamSpec("_P")
_enabled = True  # ``--no-plots`` (``plots_off``): one switch for every figure of the process


def plots_enabled() -> bool:
    """Whether figures are drawn (``--no-plots`` turns them off; a ``compare --jobs`` worker inherits the switch)."""
    return _enabled


def set_plots_enabled(enabled: bool) -> None:
    """The switch itself: for a worker process, which starts with plots on, to take its parent's setting."""
    global _enabled
    _enabled = enabled


@contextlib.contextmanager
def plots_off(off: bool = True) -> Iterator[None]:
    """Draw no figures inside (when ``off``): each PNG takes 0.1 to 0.3 s of CPU (``benchmarks/plot_times.py``),
    most of a short run's own time. Restores the setting on the way out; it never turns plots on."""
    before = _enabled
    set_plots_enabled(before and not off)
    try:
        yield
    finally:
        set_plots_enabled(before)


def figure(draw: Callable[_P, None]) -> Callable[_P, None]:
    """A function that writes one PNG: it does nothing, matplotlib not even imported, while plots are off."""

    @functools.wraps(draw)
    def maybe_draw(*args: _P.args, **kwargs: _P.kwargs) -> None:
        if _enabled:
            draw(*args, **kwargs)

    return maybe_draw


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure that renders with Agg whatever backend the process has chosen (matplotlib is imported here, when a
    plot is drawn: its import took 0.6 to 0.8 s of every command's start otherwise)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plain_log_ticks(axis: Any) -> None:
    """Tick labels of a log axis as plain text (1e+06): the default mathtext labels (10^6) are typeset by a parser
    that took most of the time of drawing a small plot."""
    from matplotlib.ticker import LogFormatter, NullFormatter

    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(NullFormatter())


def save_png(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG atomically: an interrupted save leaves no half-written plot."""
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


@figure
def plot_soft_labels(soft: Any, path: str | Path) -> None:
    """Heatmap of the soft-label matrix with class names (annotated when there are few classes)."""
    matrix = soft.matrix.numpy()
    names = soft.class_names
    c = len(names)
    size = min(max(5.0, 0.55 * c), 24.0)
    fig = new_figure((size + 1.5, size))
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="probability")
    if c <= 40:
        ax.set_xticks(range(c), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
    if c <= 12:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if matrix[i, j] < matrix.max() * 0.6 else "k",
                )
    meta = soft.metadata
    tau, boost = meta.get("temperature", float("nan")), meta.get("diagonal_boost", float("nan"))
    structure = meta.get("structure", "similarity")
    ax.set_title(f"soft labels ({structure}, tau {tau:.4g}, boost {boost:.4g})")
    ax.set_xlabel("target class")
    ax.set_ylabel("true class")
    save_png(fig, path)


@figure
def plot_reconstructions(inputs: torch.Tensor, recon: torch.Tensor, path: str | Path) -> None:
    """Top row: inputs in [0, 1]; bottom row: the autoencoder's reconstructions."""
    n = inputs.shape[0]
    fig = new_figure((n * 0.9, 2.1))
    axes = fig.subplots(2, n, squeeze=False)
    for row, batch in enumerate((inputs, recon)):
        for i in range(n):
            img = batch[i].clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[row][i]
            ax.imshow(
                img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None, vmin=0, vmax=1
            )
            ax.axis("off")
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    save_png(fig, path)


@figure
def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> None:
    """Training loss and validation top-1 per epoch, one line per run."""
    fig = new_figure((11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        ax_loss.plot(epochs, [r["train_loss"] for r in history], label=name)
        ax_acc.plot(epochs, [r["val_top1"] for r in history], label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    plain_log_ticks(ax_loss.yaxis)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_png(fig, path)
