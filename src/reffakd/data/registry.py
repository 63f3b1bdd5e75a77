"""Dataset registry: a name maps to a loader returning an ``ImageDataset``.

Every loader takes ``data_dir`` and ``download`` (the pipeline passes both); dataset-specific
keywords (``image_size``, ``streaming``, ``test_dir``...) pass through ``load_dataset``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ReffAKDError
from .cifar import load_cifar10, load_cifar100
from .dataset import ImageDataset
from .fashion_mnist import load_fashion_mnist
from .image_folder import load_imagefolder
from .mnist import load_mnist
from .tiny_imagenet import load_tiny_imagenet

DatasetLoader = Callable[..., ImageDataset]
DATASETS: dict[str, DatasetLoader] = {
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tiny-imagenet": load_tiny_imagenet,
    "imagefolder": load_imagefolder,
}


@dataclass(frozen=True)
class DatasetSize:
    """A published dataset's size and shape as its loader returns it, for what is computed without the files
    (``reffakd cost``): training and test images, channels, default side length, classes."""

    train_images: int
    test_images: int
    channels: int
    image_size: int
    num_classes: int


# The loaders' own output (the MNISTs padded to 32 x 32; Tiny ImageNet's labelled validation set as its test set).
DATASET_SIZES: dict[str, DatasetSize] = {
    "fashion-mnist": DatasetSize(60_000, 10_000, 1, 32, 10),
    "mnist": DatasetSize(60_000, 10_000, 1, 32, 10),
    "cifar10": DatasetSize(50_000, 10_000, 3, 32, 10),
    "cifar100": DatasetSize(50_000, 10_000, 3, 32, 100),
    "tiny-imagenet": DatasetSize(100_000, 10_000, 3, 64, 200),
}


def load_dataset(name: str, **kwargs: Any) -> ImageDataset:
    """Call the dataset's loader; an option it does not take is one clear error, not a TypeError."""
    if name not in DATASETS:
        raise ReffAKDError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    loader = DATASETS[name]
    accepted = inspect.signature(loader).parameters
    for key in kwargs:
        if key not in accepted:
            users = sorted(n for n, fn in DATASETS.items() if key in inspect.signature(fn).parameters)
            raise ReffAKDError(
                f"{key} does not apply to dataset {name}; it applies to: {', '.join(users) or 'none'}",
                params=(key, "dataset"),
            )
    return loader(**kwargs)
