"""Batches straight from in-memory uint8 tensors: shuffle, augment, scale and normalise per batch.

In a distributed run (``shard=(rank, world_size)``) every rank draws the same permutation and the
same augmentation from the same generator and keeps its contiguous part of each global batch, so
the ranks' batches together are exactly the single-process batches of the same global size.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .augment import BatchAugment
from .dataset import Split


def shard_bounds(size: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rank ``r``'s slice [lo, hi) of a global batch of ``size``: W near-equal contiguous parts (as ``tensor_split``)."""
    r, w = shard
    q, rem = divmod(size, w)
    lo = r * q + min(r, rem)
    return lo, lo + q + (1 if r < rem else 0)


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """None for no sharding (also for a world of one), else a checked (rank, world_size)."""
    if shard is None or shard[1] == 1:
        return None
    r, w = shard
    if not (w >= 1 and 0 <= r < w):
        raise ValueError(f"shard {shard} is not (rank, world_size) with 0 <= rank < world_size")
    return (int(r), int(w))


class TensorBatches:
    """An iterable of (images, labels) batches over a ``Split`` held in memory.

    ``normalize=None`` yields pixels in [0, 1] (what the autoencoder's Sigmoid can reconstruct);
    otherwise (x - mean) / std, what the classifiers see. ``shard=(rank, world_size)``: this rank's
    part of each batch of ``batch_size`` (the global batch); ``len`` counts global batches, equal on
    every rank. ``order`` is the permutation of the epoch being iterated (for a mid-epoch resume).
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
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator if generator is not None else torch.Generator()
        self.drop_last = drop_last
        self.shard = check_shard(shard)
        self.order: torch.Tensor | None = None
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
        return self.iter_from()

    def iter_from(self, order: torch.Tensor | None = None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start``, ``start + 1``, ... of the epoch with permutation ``order``; with the
        generator restored to its state before batch ``start``, the rest of an interrupted epoch.
        ``order=None`` draws a fresh permutation when shuffling (what ``iter`` does)."""
        n = self.num_samples
        if order is None and self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        self.order = order
        on_device = order.to(self.device) if order is not None else None
        for i in range(start, len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            part = shard_bounds(hi - lo, self.shard) if self.shard is not None else None
            if part is not None and self.augment is None:  # only this rank's images are needed
                lo, hi = lo + part[0], lo + part[1]
            if on_device is None:
                images, labels = self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = on_device[lo:hi]
                images, labels = self.images[idx], self.labels[idx]
            if self.augment is not None:
                # The whole global batch, so the draws are the single-process ones; then this rank's part.
                images = self.augment(images, self.generator)
                if part is not None:
                    images, labels = images[part[0] : part[1]], labels[part[0] : part[1]]
            x = images.float().div_(255.0)
            if self.mean is not None:
                x = x.sub_(self.mean).div_(self.std)
            yield x, labels
