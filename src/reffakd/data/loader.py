"""Batches straight from in-memory uint8 tensors: shuffle, augment, scale and normalise per batch.

In a distributed run (``shard=(rank, world_size)``) every rank draws the same permutation and the
same augmentation from the same generator and keeps its contiguous part of each global batch, so
the ranks' batches together are exactly the single-process batches of the same global size.

``indexed=True`` adds each image's index in its split as a third element of the batch, so a source
can give one target per image (PS-KD's previous predictions, per-image soft labels).
``pairs=True`` appends to the images of each batch one partner per image, another image of the same
class (CS-KD's class-wise pairs): the images are then the b images followed by their b partners,
labels and indices the b images'. Partners are drawn from a generator seeded by the epoch's
permutation and the batch number, not from the data generator, so a resumed epoch, a shard and a
streamed split draw the same partners as one uninterrupted in-memory process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .augment import BatchAugment
from .dataset import Split
from .transfer import to_device


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


class ClassPairs:
    """Each image's class-mates, to draw a partner of the same class for each image of a batch.

    A partner is uniform over the *other* images of the image's class (the image itself only when it is
    alone in its class); CS-KD's release draws over the whole class, the image itself included.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        labels = labels.cpu().long()
        self.members = torch.sort(labels, stable=True).indices  # split indices grouped by class
        counts = torch.bincount(labels)
        self.count = counts
        self.offset = torch.cumsum(counts, 0) - counts
        self.position = torch.empty_like(self.members)
        self.position[self.members] = torch.arange(labels.numel()) - self.offset[labels[self.members]]
        self.labels = labels

    def partners(self, index: torch.Tensor, seed: int) -> torch.Tensor:
        """Split indices of one partner per entry of ``index``, drawn with ``torch.Generator().manual_seed(seed)``."""
        index = index.cpu().long()
        y = self.labels[index]
        u = torch.rand(index.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        others = (self.count[y] - 1).clamp_min(1)
        pos = torch.minimum((u * others).long(), others - 1)
        pos = torch.where(self.count[y] > 1, pos + (pos >= self.position[index]).long(), torch.zeros_like(pos))
        return self.members[self.offset[y] + pos]


def pair_seed(order: torch.Tensor | None, batch: int) -> int:
    """The seed of batch ``batch``'s partners: a function of the epoch's permutation and the batch number only."""
    head = order[:16].cpu().long() if order is not None else torch.zeros(1, dtype=torch.long)
    weights = torch.arange(1, head.numel() + 1, dtype=torch.long)
    return (int((head * weights * 1_000_003).sum()) * 7_919 + batch * 104_729 + 12_345) % (2**63 - 1)


class BatchIterable:
    """What every batch iterable shares: the global batch count, the epoch's permutation, the shard,
    and the last step of each batch (uint8 -> [0, 1] floats -> optional (x - mean) / std).

    ``normalize=None`` yields pixels in [0, 1] (what the autoencoder's Sigmoid can reconstruct);
    otherwise (x - mean) / std, what the classifiers see. ``shard=(rank, world_size)``: this rank's
    part of each batch of ``batch_size`` (the global batch); ``len`` counts global batches, equal on
    every rank. ``order`` is the permutation of the epoch being iterated (for a mid-epoch resume).
    ``indexed`` and ``pairs``: see the module docstring.
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
        indexed: bool = False,
        pairs: bool = False,
    ) -> None:
        self.device = device
        self.indexed = indexed
        self.pairs = ClassPairs(labels) if pairs else None
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

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.iter_from()

    def iter_from(self, order: torch.Tensor | None = None, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        raise NotImplementedError

    def _epoch_order(self, order: torch.Tensor | None) -> torch.Tensor | None:
        """The given permutation (a resumed epoch), else a fresh one when shuffling; kept as ``self.order``."""
        if order is None and self.shuffle:
            order = torch.randperm(self.num_samples, generator=self.generator)
        self.order = order
        return order

    def _batch(
        self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._to_float(images)
        return (x, labels, index.to(labels.device)) if self.indexed else (x, labels)

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
        indexed: bool = False,
        pairs: bool = False,
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
            indexed=indexed,
            pairs=pairs,
        )

    def gather(self, idx: torch.Tensor, *draws: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch of images ``idx`` (on the device), augmented by ``draws`` (``BatchAugment.draw``'s, on the
        device): device work alone, so that the engine can record it (``engine.cudagraph.BatchGraph``)."""
        images = self.images[idx]
        if self.augment is not None:
            images = self.augment.apply(images, draws)
        return self._batch(images, self.labels[idx], idx)

    def gather_batch(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``gather`` of a one-process batch's (indices, *host draws): the draws sent to the device first. Under
        ``cuda_graph`` the engine shadows it, for the life of a training loop, with a recorded graph of ``gather``."""
        return self.gather(*(to_device(t, self.device) for t in tensors))

    def iter_from(self, order: torch.Tensor | None = None, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches ``start``, ``start + 1``, ... of the epoch with permutation ``order``; with the
        generator restored to its state before batch ``start``, the rest of an interrupted epoch.
        ``order=None`` draws a fresh permutation when shuffling (what ``iter`` does)."""
        n = self.num_samples
        order = self._epoch_order(order)
        on_device = order.to(self.device) if order is not None else None
        for i in range(start, len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            idx = on_device[lo:hi] if on_device is not None else torch.arange(lo, hi, device=self.device)
            if self.shard is None and self.pairs is None:  # one process's batches: draws on the host, the rest there
                draws = self.augment.draw(hi - lo, self.generator) if self.augment is not None else ()
                yield self.gather_batch((idx, *draws))
                continue
            part = shard_bounds(hi - lo, self.shard) if self.shard is not None else (0, hi - lo)
            partners = None
            if self.pairs is not None:  # drawn from the host's copy of the indices: reading idx would wait for a GPU
                host_idx = order[lo:hi] if order is not None else torch.arange(lo, hi)
                partners = to_device(self.pairs.partners(host_idx, pair_seed(order, i)), self.device)
            if self.augment is None:  # only this rank's images are needed
                mine = idx[part[0] : part[1]]
                images = self.images[mine]
                if partners is not None:
                    images = torch.cat([images, self.images[partners[part[0] : part[1]]]])
            else:
                # The whole global batch (and its partners), so the draws are the single-process ones;
                # then this rank's part.
                whole = self.images[idx] if partners is None else self.images[torch.cat([idx, partners])]
                whole = self.augment(whole, self.generator)
                b = hi - lo
                images = whole[part[0] : part[1]]
                if partners is not None:
                    images = torch.cat([images, whole[b + part[0] : b + part[1]]])
            mine = idx[part[0] : part[1]]
            yield self._batch(images, self.labels[mine], mine)
