"""Soft labels in one call, from a dataset or from tensors of images and labels: the library's front door.

``build_soft_labels`` is the stage the commands run (splits in, an output folder, the engine's options);
``make_soft_labels`` is what a user's own script calls: the command line's defaults (the paper preset, a 10-epoch
autoencoder, seed 0), an output folder only when one is asked for, and never one that holds anything already.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..data import BatchAugment, DataConfig, DataSplits, ImageDataset, channel_stats, load_splits, split_train_val
from ..engine import OptimConfig, TrainOptions
from ..engine.distributed import pick_device
from ..errors import ReffAKDError
from ..rundir import check_new_run_dir
from .artifact import SoftLabels
from .builder import SoftLabelConfig, build_soft_labels
from .calibration import Calibration

AUTOENCODER_EPOCHS = 10  # `reffakd softlabels`'s --ae-epochs default


def default_config(
    dataset: str = "fashion-mnist", preset: str = "paper", autoencoder_epochs: int = AUTOENCODER_EPOCHS, seed: int = 0
) -> SoftLabelConfig:
    """The soft-label settings `reffakd softlabels` uses by default (``preset``: ``paper`` or ``calibrated``)."""
    return SoftLabelConfig(
        Calibration.preset(preset, dataset), preset, OptimConfig(epochs=autoencoder_epochs), seed=seed
    )


def splits_from_tensors(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str] | None = None,
    *,
    val_size: int | None = None,
    split_seed: int = 0,
) -> DataSplits:
    """Your own images as a dataset: uint8 (N, C, H, W), or floats in [0, 1]; labels 0..K-1 (N,).

    A seeded validation split is carved out as for any dataset (10 % of the images, at most 5,000, by default); the
    normalisation is the images' own per-channel mean and std; the augmentation a crop after padding by 1/8 of the
    side, with flips. There is no test split: soft labels never need one.
    """
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ReffAKDError(
            f"images must be (N, C, H, W) and labels (N,) with the same N; got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if images.dtype != torch.uint8:
        if not images.is_floating_point() or bool((images < 0).any() or (images > 1).any()):
            raise ReffAKDError(f"images must be uint8 or floats in [0, 1]; got {images.dtype} outside that range")
        images = images.mul(255).round().to(torch.uint8)
    labels = labels.long()
    k = int(labels.max()) + 1 if labels.numel() else 0
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(k))
    if labels.numel() == 0 or int(labels.min()) < 0 or k > len(names):
        raise ReffAKDError(f"labels must lie in 0..{len(names) - 1} (one per class name); got {labels.min()}..{k - 1}")
    mean, std = channel_stats(images)
    std = tuple(max(v, 1e-3) for v in std)  # a constant channel is not divided by zero
    side = min(int(images.shape[2]), int(images.shape[3]))
    empty = images[:0]
    dataset = ImageDataset(
        "tensors", images, labels, empty, labels[:0], names, "tensors given in Python", mean, std,
        BatchAugment(pad=max(1, side // 8), flip=True),
    )  # fmt: skip
    return split_train_val(dataset, val_size, split_seed)


def make_soft_labels(
    data: str | DataSplits | tuple[torch.Tensor, torch.Tensor] = "fashion-mnist",
    *,
    out: str | Path | None = None,
    config: SoftLabelConfig | None = None,
    class_names: Sequence[str] | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> SoftLabels:
    """Train the autoencoder and return the soft labels (``SoftLabels``: ``matrix``, ``instance``, their cost).

    ``data``: a registered dataset's name (``data_dir``: where its files are), splits you loaded
    (``reffakd.data.load_splits``), or ``(images, labels)`` tensors (``splits_from_tensors``, with ``class_names``).
    ``config``: ``default_config(...)``, the command line's defaults, unless given. ``out``: a new folder to keep
    the artifact, the autoencoder, diagnostics and plots in (written as ``OUT.partial`` and renamed at the end; a
    folder that holds anything is refused, never written over; an empty one is replaced); ``None`` builds in a
    temporary folder that is removed.
    """
    if out is not None:  # before the data are loaded (build_soft_labels checks it again)
        check_new_run_dir(out, empty_ok=True)
    if isinstance(data, str):
        splits = load_splits(DataConfig(dataset=data, data_dir=data_dir), log)
    elif isinstance(data, DataSplits):
        splits = data
    else:
        images, labels = data
        splits = splits_from_tensors(images, labels, class_names)
    cfg = config if config is not None else default_config(splits.dataset)
    options = TrainOptions(pick_device(device), progress=progress, log=log)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="reffakd-soft-labels-") as tmp:
            soft, _ = build_soft_labels(splits, cfg, Path(tmp) / "soft", options)
        return soft
    soft, _ = build_soft_labels(splits, cfg, out, options)  # written as OUT.partial, renamed at the end
    return soft
