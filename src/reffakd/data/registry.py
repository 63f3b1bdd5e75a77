"""Dataset registry: a name maps to a loader returning an ``ImageDataset``.

Later datasets (CIFAR, Tiny ImageNet, ImageFolder) register here the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ReffAKDError
from .dataset import ImageDataset
from .fashion_mnist import load_fashion_mnist

DatasetLoader = Callable[..., ImageDataset]
DATASETS: dict[str, DatasetLoader] = {"fashion-mnist": load_fashion_mnist}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    def wrap(fn: DatasetLoader) -> DatasetLoader:
        DATASETS[name] = fn
        return fn

    return wrap


def load_dataset(name: str, **kwargs: Any) -> ImageDataset:
    if name not in DATASETS:
        raise ReffAKDError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**kwargs)
