"""MNIST: the Fashion-MNIST machinery with torchvision's ``MNIST`` reader (same IDX files, same layouts)."""

from __future__ import annotations

import os
from pathlib import Path

from .cache import default_cache_dir
from .dataset import ImageDataset
from .fashion_mnist import MNIST_SPEC, load_idx_dataset, locate_idx


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
    download: bool = True,
) -> ImageDataset:
    """MNIST from ``data_dir`` (IDX files raw or .gz, flat or in ``MNIST/raw``) or torchvision's download,
    resized 28 -> ``image_size`` (32, as for Fashion-MNIST, so LeNet-5 and the autoencoder fit)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root, origin = locate_idx(MNIST_SPEC, data_dir, cache, download)
    return load_idx_dataset(MNIST_SPEC, root, origin, image_size)
