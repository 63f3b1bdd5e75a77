"""Datasets made of image files (Tiny ImageNet, ImageFolder): in memory with a decode cache, or streamed.

Decoding 100,000 JPEGs takes a minute or more; the decoded uint8 tensors are cached as one
safetensors file (a format that cannot run code when loaded), keyed by every file's path, size and
mtime, the labels and the decode settings, so a changed source gets a fresh decode.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ReffAKDError
from ..io import write_with
from .augment import BatchAugment
from .dataset import ImageDataset, channel_stats
from .images import ImageFiles, fits_in_memory

CACHE_FORMAT = "reffakd-decoded-v2"  # v2: 16-bit images scaled, not clipped white
STATS_SAMPLE = 10_000  # streamed datasets: mean/std from this many training images (seeded)


def cache_key(parts: Sequence[tuple[str, ImageFiles, torch.Tensor]]) -> str:
    """sha1 over the decode settings and, per split, every file's path, size and mtime, and the labels."""
    h = hashlib.sha1(CACHE_FORMAT.encode())
    for tag, files, labels in parts:
        h.update(f"|{tag}|{files.root.resolve()}|{files.channels}x{files.size[0]}x{files.size[1]}|".encode())
        for i in range(len(files)):
            path = files.path(i)
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ReffAKDError(f"cannot read {path}: {exc.strerror or exc}") from None
            h.update(files.names[i] + f":{st.st_size}:{st.st_mtime_ns}\n".encode())
        h.update(labels.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:16]


def decode_cached(
    name: str,
    train: ImageFiles,
    train_labels: torch.Tensor,
    test: ImageFiles,
    test_labels: torch.Tensor,
    cache_dir: Path,
    num_workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(train images, test images, whether they came from the cache); decodes and caches on a miss.

    A cache file that is unreadable or of the wrong shape is treated as a miss and rewritten.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = cache_dir / name / f"{cache_key([('train', train, train_labels), ('test', test, test_labels)])}.safetensors"
    if path.is_file():
        try:
            cached = load_file(str(path))
            x, t = cached["train_images"], cached["test_images"]
            if tuple(x.shape) == train.shape and tuple(t.shape) == test.shape and x.dtype == t.dtype == torch.uint8:
                return x, t, True
        except (SafetensorError, OSError, ValueError, KeyError):
            pass
    x, t = train.to_tensor(num_workers), test.to_tensor(num_workers)  # decode errors raise before anything is written
    try:  # the cache is optional: a read-only or full cache folder costs the next run a decode, nothing more
        write_with(
            path,
            lambda tmp: save_file(
                {"train_images": x, "test_images": t}, str(tmp), metadata={"format": CACHE_FORMAT, "dataset": name}
            ),
        )
    except OSError:
        pass
    return x, t, False


def sample_stats(
    files: ImageFiles, limit: int = STATS_SAMPLE, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of a seeded sample of at most ``limit`` images: a streamed set is never decoded whole."""
    n = len(files)
    idx = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        if n > limit
        else torch.arange(n)
    )
    sample = files[idx]
    assert isinstance(sample, ImageFiles)
    return channel_stats(sample.to_tensor())


def dataset_from_files(
    name: str,
    train: ImageFiles,
    train_labels: Sequence[int] | torch.Tensor,
    test: ImageFiles,
    test_labels: Sequence[int] | torch.Tensor,
    *,
    class_names: tuple[str, ...],
    source: str,
    augment: BatchAugment,
    cache_dir: Path,
    streaming: bool | None = None,
    num_workers: int | None = None,
) -> ImageDataset:
    """An ``ImageDataset`` from file lists: decoded (cached) tensors, or the files themselves when streaming.

    ``streaming=None`` streams when the uint8 tensors would not fit in memory (``fits_in_memory``).
    """
    y_train, y_test = torch.as_tensor(train_labels, dtype=torch.int64), torch.as_tensor(test_labels, dtype=torch.int64)
    if streaming is None:
        streaming = not fits_in_memory(len(train) + len(test), train.channels, *train.size)
    if streaming:
        mean, std = sample_stats(train)
        return ImageDataset(
            name, train, y_train, test, y_test, class_names, f"{source}; streamed from disk", mean, std, augment
        )
    x, t, hit = decode_cached(name, train, y_train, test, y_test, cache_dir, num_workers)
    mean, std = channel_stats(x)
    return ImageDataset(
        name,
        x,
        y_train,
        t,
        y_test,
        class_names,
        source + ("; decoded images from the cache" if hit else ""),
        mean,
        std,
        augment,
    )
