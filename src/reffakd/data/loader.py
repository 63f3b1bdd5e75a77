"""Batches straight from in-memory uint8 tensors: shuffle, augment, scale and normalise per batch.

In a distributed run (``shard=(rank, world_size)``) every rank draws the same permutation and the
same augmentation from the same generator and keeps its contiguous part of each global batch, so
the ranks' batches together are exactly the single-process batches of the same global size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .augment import BatchAugment
from .dataset import Split


def shard_bounds(size: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rank ``r``'s slice [lo, hi) of a global batch of ``size``: W near-equal contiguous parts
    (as ``tensor_split``)."""
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


class BatchIterable:
    """What every batch iterable shares: the global batch count, the epoch's permutation, the shard,
    and the last step of each batch (uint8 -> [0, 1] floats -> optional (x - mean) / std).

    ``normalize=None`` yields pixels in [0, 1] (what the autoencoder's Sigmoid can reconstruct);
    otherwise (x - mean) / std, what the classifiers see. ``shard=(rank, world_size)``: this rank's
    part of each batch of ``batch_size`` (the global batch); ``len`` counts global batches, equal on
    every rank. ``order`` is the permutation of the epoch being iterated (for a mid-epoch resume).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: BatchAugment | None,
        normalize: tuple[Sequence[float], Sequence[float]] | None,
        generator: torch.Generator | None,
        device: torch.device,
        drop_last: bool,
        shard: tuple[int, int] | None,
    ) -> None:
        self.device = device
        self.labels = labels
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

    def iter_from(
        self, order: torch.Tensor | None = None, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def _epoch_order(self, order: torch.Tensor | None) -> torch.Tensor | None:
        """The given permutation (a resumed epoch), else a fresh one when shuffling; kept as ``self.order``."""
        if order is None and self.shuffle:
            order = torch.randperm(self.num_samples, generator=self.generator)
        self.order = order
        return order

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std)
        return x


class TensorBatches(BatchIterable):
    """An iterable of (images, labels) batches over a ``Split`` held in memory (see ``BatchIterable``)."""

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
        dev = torch.device(device)
        self.images = split.images.to(dev)
        super().__init__(
            split.labels.to(dev),
            batch_size,
            shuffle=shuffle,
            augment=augment,
            normalize=normalize,
            generator=generator,
            device=dev,
            drop_last=drop_last,
            shard=shard,
        )

    def iter_from(
        self, order: torch.Tensor | None = None, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start``, ``start + 1``, ... of the epoch with permutation ``order``; with the
        generator restored to its state before batch ``start``, the rest of an interrupted epoch.
        ``order=None`` draws a fresh permutation when shuffling (what ``iter`` does)."""
        n = self.num_samples
        order = self._epoch_order(order)
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
            yield self._to_float(images), labels
