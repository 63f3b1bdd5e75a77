"""Batches decoded from files by DataLoader workers, for datasets too big to hold in memory.

``StreamingBatches`` has ``TensorBatches``' interface and draws from the generator in the same
order (the epoch's permutation, then the augmentation of each batch, applied to uint8 batches on
the device), so over the same split and seed both yield the same batches; only where the pixels
come from differs. ``make_batches`` picks the right one for a split. Sharded (distributed) runs
decode only this rank's part of each global batch but augment it with the global batch's draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .augment import BatchAugment
from .dataset import Split
from .images import ImageFiles, decode_batches, default_num_workers
from .loader import BatchIterable, TensorBatches, pair_seed, shard_bounds
from .transfer import to_device


class StreamingBatches(BatchIterable):
    """An iterable of (images, labels) batches over a ``Split`` whose images are ``ImageFiles``.

    ``normalize=None`` yields pixels in [0, 1]; otherwise (x - mean) / std, as ``TensorBatches``.
    ``num_workers`` processes decode whole batches ahead (default: up to 8, one per core).
    ``shard=(rank, world_size)``, ``order``, ``iter_from``, ``indexed`` and ``pairs`` as in ``TensorBatches``.
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
        shard: tuple[int, int] | None = None,
        indexed: bool = False,
        pairs: bool = False,
    ) -> None:
        if not isinstance(split.images, ImageFiles):
            raise TypeError(
                f"StreamingBatches needs a split of ImageFiles, got {type(split.images).__name__}; use TensorBatches"
            )
        self.files = split.images
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        super().__init__(
            split.labels.cpu(),
            batch_size,
            shuffle=shuffle,
            augment=augment,
            normalize=normalize,
            generator=generator,
            device=torch.device(device),
            drop_last=drop_last,
            shard=shard,
            indexed=indexed,
            pairs=pairs,
        )

    def iter_from(self, order: torch.Tensor | None = None, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches ``start``, ``start + 1``, ... of the epoch with permutation ``order``
        (see ``TensorBatches.iter_from``)."""
        n = self.num_samples
        order = self._epoch_order(order)
        full = order if order is not None else torch.arange(n)
        index = [full[i * self.batch_size : min((i + 1) * self.batch_size, n)] for i in range(start, len(self))]
        parts = [shard_bounds(len(idx), self.shard) if self.shard is not None else (0, len(idx)) for idx in index]
        pairs = self.pairs
        partners = [pairs.partners(idx, pair_seed(order, start + k)) for k, idx in enumerate(index)] if pairs else None
        # An empty part (a last batch smaller than the world) still decodes one image, dropped below.
        local = [idx[lo:hi] if hi > lo else idx[:1] for idx, (lo, hi) in zip(index, parts)]
        if partners is not None:  # this rank's images, then their partners
            local = [
                torch.cat([mine, p[lo:hi]]) if hi > lo else mine for mine, p, (lo, hi) in zip(local, partners, parts)
            ]
        pin = self.device.type == "cuda"
        for idx, (lo, hi), images in zip(
            index, parts, decode_batches(self.files, local, self.num_workers, pin_memory=pin)
        ):
            images = to_device(images, self.device)  # pinned by the decoder already on CUDA
            m = hi - lo
            if partners is None or m == 0:
                images = images[:m]
            labels = to_device(self.labels[idx[lo:hi]], self.device)
            if self.augment is not None:
                b = len(idx)
                if self.shard is not None or partners is not None:
                    # The global batch's draws (its partners after it), applied to this rank's part.
                    whole = images.new_zeros((b * (2 if partners is not None else 1), *images.shape[1:]))
                    whole[lo:hi] = images[:m]
                    if partners is not None:
                        whole[b + lo : b + hi] = images[m : 2 * m]
                    whole = self.augment(whole, self.generator)
                    images = whole[lo:hi]
                    if partners is not None:
                        images = torch.cat([images, whole[b + lo : b + hi]])
                else:
                    images = self.augment(images, self.generator)
            yield self._batch(images, labels, idx[lo:hi])


def make_batches(split: Split, batch_size: int, **kwargs: Any) -> TensorBatches | StreamingBatches:
    """``TensorBatches`` for a split in memory, ``StreamingBatches`` for one on disk; same keywords.

    ``num_workers`` is used by streaming only and dropped for the in-memory case.
    """
    if isinstance(split.images, ImageFiles):
        return StreamingBatches(split, batch_size, **kwargs)
    kwargs.pop("num_workers", None)
    return TensorBatches(split, batch_size, **kwargs)
