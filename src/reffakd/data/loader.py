"""Batches straight from in-memory uint8 tensors: shuffle, augment, scale and normalise per batch."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .augment import BatchAugment
from .dataset import Split


class TensorBatches:
    """An iterable of (images, labels) batches over a ``Split`` held in memory.

    ``normalize=None`` yields pixels in [0, 1] (what the autoencoder's Sigmoid can reconstruct);
    otherwise (x - mean) / std, what the classifiers see.
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
    ) -> None:
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator if generator is not None else torch.Generator()
        self.drop_last = drop_last
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
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if order is None:
                images, labels = self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                images, labels = self.images[idx], self.labels[idx]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            x = images.float().div_(255.0)
            if self.mean is not None:
                x = x.sub_(self.mean).div_(self.std)
            yield x, labels
