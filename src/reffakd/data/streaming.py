"""Batches decoded from files by DataLoader workers, for datasets too big to hold in memory.

``StreamingBatches`` has ``TensorBatches``' interface and draws from the generator in the same
order (the epoch's permutation, then the augmentation of each batch, applied to uint8 batches on
the device), so over the same split and seed both yield the same batches; only where the pixels
come from differs. ``make_batches`` picks the right one for a split.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from .augment import BatchAugment
from .dataset import Split
from .images import ImageFiles, decode_batches, default_num_workers
from .loader import TensorBatches


class StreamingBatches:
    """An iterable of (images, labels) batches over a ``Split`` whose images are ``ImageFiles``.

    ``normalize=None`` yields pixels in [0, 1]; otherwise (x - mean) / std, as ``TensorBatches``.
    ``num_workers`` processes decode whole batches ahead (default: up to 8, one per core).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: BatchAugment | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        num_workers: int | None = None,
    ) -> None:
        if not isinstance(split.images, ImageFiles):
            raise TypeError(f"StreamingBatches needs a split of ImageFiles, got {type(split.images).__name__}; use TensorBatches")
        self.device = torch.device(device)
        self.files = split.images
        self.labels = split.labels.cpu()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator if generator is not None else torch.Generator()
        self.drop_last = drop_last
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.mean = self.std = None
        if normalize is not None:
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(normalize[0], dtype=torch.float32, device=self.device).view(shape)
            self.std = torch.tensor(normalize[1], dtype=torch.float32, device=self.device).view(shape)

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        index = [order[i * self.batch_size : min((i + 1) * self.batch_size, n)] for i in range(len(self))]
        pin = self.device.type == "cuda"
        for idx, images in zip(index, decode_batches(self.files, index, self.num_workers, pin_memory=pin)):
            images = images.to(self.device, non_blocking=pin)
            labels = self.labels[idx].to(self.device, non_blocking=pin)
            if self.augment is not None:
                images = self.augment(images, self.generator)
            x = images.float().div_(255.0)
            if self.mean is not None:
                x = x.sub_(self.mean).div_(self.std)
            yield x, labels


def make_batches(split: Split, batch_size: int, **kwargs: Any) -> TensorBatches | StreamingBatches:
    """``TensorBatches`` for a split in memory, ``StreamingBatches`` for one on disk; same keywords.

    ``num_workers`` is used by streaming only and dropped for the in-memory case.
    """
    if isinstance(split.images, ImageFiles):
        return StreamingBatches(split, batch_size, **kwargs)
    kwargs.pop("num_workers", None)
    return TensorBatches(split, batch_size, **kwargs)
