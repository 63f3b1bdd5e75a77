"""PNG plots of what matters: the soft-label matrix, reconstructions, training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..io import write_with  # noqa: E402


def _save(fig: Any, path: str | Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def plot_soft_labels(soft: Any, path: str | Path) -> None:
    """Heatmap of the soft-label matrix with class names (annotated when there are few classes)."""
    matrix = soft.matrix.numpy()
    names = soft.class_names
    c = len(names)
    size = min(max(5.0, 0.55 * c), 24.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
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
    title = f"soft labels (tau {meta.get('temperature', float('nan')):.4g}, boost {meta.get('diagonal_boost', float('nan')):.4g})"
    ax.set_title(title)
    ax.set_xlabel("target class")
    ax.set_ylabel("true class")
    _save(fig, path)


def plot_reconstructions(inputs: torch.Tensor, recon: torch.Tensor, path: str | Path) -> None:
    """Top row: inputs in [0, 1]; bottom row: the autoencoder's reconstructions."""
    n = inputs.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.1), squeeze=False)
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
    _save(fig, path)


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> None:
    """Training loss and validation top-1 per epoch, one line per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        ax_loss.plot(epochs, [r["train_loss"] for r in history], label=name)
        ax_acc.plot(epochs, [r["val_top1"] for r in history], label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
