"""The in-memory form every dataset is loaded into, and the seeded train/validation split.

Datasets that fit in RAM live as uint8 tensors (N, C, H, W): a batch is an index into them, so
the input pipeline costs almost nothing next to even a small model like LeNet-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ReffAKDError


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset held in memory; class names travel with it."""

    name: str
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])


@dataclass(frozen=True)
class Split:
    """Images and labels of one part of a dataset (train, val or test)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataSplits:
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale (float64 accumulation)."""
    x = images.to(torch.float64).div_(255.0)
    dims = (0, 2, 3)
    mean = x.mean(dim=dims)
    std = x.std(dim=dims)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def split_train_val(dataset: ImageDataset, val_size: int, seed: int) -> DataSplits:
    """Carve a seeded validation set out of the training set; the test set is left for reporting only.

    The split depends on ``seed`` alone, so every method trained with the same seed sees the same
    validation images, and the soft labels are built from training images the validation set
    never contains.
    """
    n = int(dataset.train_labels.shape[0])
    if not 1 <= val_size < n:
        raise ReffAKDError(f"--val-size {val_size} is out of range: it must be between 1 and {n - 1} (training set has {n} images)")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    return DataSplits(
        train=Split(dataset.train_images[train_idx], dataset.train_labels[train_idx]),
        val=Split(dataset.train_images[val_idx], dataset.train_labels[val_idx]),
        test=Split(dataset.test_images, dataset.test_labels),
        class_names=dataset.class_names,
        mean=dataset.mean,
        std=dataset.std,
        dataset=dataset.name,
    )
