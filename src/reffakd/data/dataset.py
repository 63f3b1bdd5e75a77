"""The in-memory form every dataset is loaded into, and the seeded train/validation split.

Datasets that fit in RAM live as uint8 tensors (N, C, H, W): a batch is an index into them, so
the input pipeline costs almost nothing next to even a small model like LeNet-5. Datasets that do
not fit keep their images on disk as an ``ImageFiles`` (same ``shape``, same indexing by a tensor
of positions), so the split below and every ``shape``-based property work on both unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import torch
import torch.nn.functional as F

from ..errors import ReffAKDError
from .augment import BatchAugment
from .budget import UNLABELLED, LabelBudget, budget_record, labelled_subset
from .images import decode_image, probe_image

if TYPE_CHECKING:
    from .images import ImageFiles

Images = Union[torch.Tensor, "ImageFiles"]  # uint8 (N, C, H, W) in memory, or files decoded on demand


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset; class names, normalisation and augmentation travel with it."""

    name: str
    train_images: Images
    train_labels: torch.Tensor  # int64 (N,)
    test_images: Images
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    augment: BatchAugment = field(default_factory=BatchAugment)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def streaming(self) -> bool:
        return not isinstance(self.train_images, torch.Tensor)


@dataclass(frozen=True)
class Split:
    """Images and labels of one part of a dataset (train, val or test)."""

    images: Images
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_fingerprint(split: Split) -> str:
    """A SHA-256 of a split's content: its labels and its images (pixels in memory, file paths on disk), in order.

    What a per-image table is tied to: the same images in the same order give the same fingerprint.
    """
    import hashlib

    h = hashlib.sha256(b"reffakd-split/1\0")
    labels = split.labels.detach().cpu().to(torch.int64).contiguous()
    h.update(str(tuple(labels.shape)).encode())
    h.update(labels.numpy().tobytes())
    images = split.images
    if isinstance(images, torch.Tensor):
        t = images.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    else:  # files on disk: their names relative to the root, in order, and the decoded shape
        h.update(f"{tuple(images.shape)}".encode())
        h.update(b"\0".join(bytes(n) for n in images.names))
    return h.hexdigest()


@dataclass(frozen=True)
class DataSplits:
    train: Split
    val: Split
    test: Split | None  # None: a run that must not see the test split (equal tuning's trials)
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    augment: BatchAugment = field(default_factory=BatchAugment)
    # A labelled budget (``data.budget``): ``train`` holds the labelled images only, ``unlabelled`` the
    # others (label -1, for the autoencoder alone), ``budget`` the record that identifies the subset.
    unlabelled: Split | None = None
    budget: dict[str, Any] | None = None
    split: dict[str, int] = field(default_factory=dict)  # how val was carved: {"seed", "val_size"}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What makes these the same data: the dataset, the split, the sizes and a fingerprint of the content read
        (every image's bytes in memory; a streamed file's name, size and mtime). A checkpoint records it, so resume
        and ``evaluate --split val`` can refuse other data or another split (a val set holding training images)."""
        h = hashlib.sha1()
        for part in (self.train, self.val, self.test):
            if part is None:  # a tuning trial's data: no test split at all
                continue
            _digest_images(h, part.images)
            h.update(part.labels.to(torch.int64).contiguous().numpy().tobytes())
        return {
            "dataset": self.dataset,
            "split_seed": self.split.get("seed"),
            "val_size": len(self.val),
            "train_images": len(self.train),
            "test_images": len(self.test) if self.test is not None else 0,
            "fingerprint": h.hexdigest()[:16],
        }

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def streaming(self) -> bool:
        return not isinstance(self.train.images, torch.Tensor)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (ddof 1) of uint8 images on the [0, 1] scale.

    Exact integer sums over chunks: a float64 copy of Tiny ImageNet would need about 10 GB.
    """
    c = int(images.shape[1])
    total, squares = [0] * c, [0] * c
    for lo in range(0, int(images.shape[0]), 4096):
        chunk = images[lo : lo + 4096].to(torch.int64)
        for ch, (s, q) in enumerate(zip(chunk.sum(dim=(0, 2, 3)).tolist(), chunk.square().sum(dim=(0, 2, 3)).tolist())):
            total[ch] += s
            squares[ch] += q
    n = int(images.shape[0]) * int(images.shape[2]) * int(images.shape[3])
    mean = tuple(round(s / n / 255.0, 6) for s in total)
    # (n * sum(x^2) - sum(x)^2) is exact in Python integers; one division at the end.
    std = tuple(round(((n * q - s * s) / max(n * (n - 1), 1)) ** 0.5 / 255.0, 6) for s, q in zip(total, squares))
    return mean, std


def resize_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, *size) uint8, bilinear, in chunks; done once at load time."""
    if tuple(images.shape[2:]) == tuple(size):
        return images.contiguous()
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for lo in range(0, images.shape[0], 10_000):
        chunk = F.interpolate(images[lo : lo + 10_000].float(), size=size, mode="bilinear", align_corners=False)
        out[lo : lo + 10_000] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


# The datasets whose loaders resize whole uint8 tensors (``dataset.resize_uint8``: bilinear, half-pixel centres, no
# antialiasing); the file-based ones (imagefolder, tiny-imagenet) resize each file in ``decode_image`` with PIL.
TENSOR_RESIZED = frozenset({"fashion-mnist", "mnist", "cifar10", "cifar100"})


# The size a tensor-resized dataset's images have in its files (what a client of an exported model holds): the
# exported graph takes this size and repeats the loader's resize inside (``interpolation_matrix``).
NATIVE_SIZES: dict[str, tuple[int, int]] = {
    "fashion-mnist": (28, 28),
    "mnist": (28, 28),
    "cifar10": (32, 32),
    "cifar100": (32, 32),
}


def native_size(dataset: str | None, image_size: tuple[int, int]) -> tuple[int, int]:
    """The images' size before the loader resized them to ``image_size``: the dataset's files' own size where the
    loader resizes whole tensors; ``image_size`` itself for file datasets (each file is resized by PIL)."""
    return NATIVE_SIZES.get(dataset or "", tuple(image_size)) if dataset in TENSOR_RESIZED else tuple(image_size)


def interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float32 weights of ``resize_uint8``'s bilinear interpolation along one axis, taken from
    ``F.interpolate`` itself (applied to the unit vectors), so ``rows @ x @ cols.T`` repeats the loader's resize: the
    same weights, and for sizes such as 28 -> 32 (weights k/16) the same sums bit for bit, before the rounding."""
    eye = torch.eye(n_in, dtype=torch.float32).view(n_in, 1, n_in, 1)
    out = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)
    return out.view(n_in, n_out).t().contiguous()


def resize_method(dataset: str | None) -> str:
    """How a dataset's images were resized at training, in words (what ``read_image_as_trained`` repeats)."""
    if dataset in TENSOR_RESIZED:
        return "bilinear, half-pixel centres, no antialiasing (torch interpolate), rounded to uint8"
    return "bilinear with antialiasing (PIL Image.resize BILINEAR)"


def read_image_as_trained(
    path: str | os.PathLike[str], channels: int, size: tuple[int, int], dataset: str | None
) -> torch.Tensor:
    """One file -> uint8 (channels, H, W), converted and resized as the training images of ``dataset`` were, so a
    test image saved as a file gets the pixels the model was evaluated on."""
    if dataset not in TENSOR_RESIZED:
        return decode_image(path, channels, size)
    (h, w), _ = probe_image(path)
    return resize_uint8(decode_image(path, channels, (h, w))[None], size)[0]


def _digest_images(h: Any, images: Images) -> None:
    if isinstance(images, torch.Tensor):
        h.update(images.contiguous().numpy().data)  # the bytes themselves, without a copy
        return
    for i in range(len(images.names)):  # streamed: the files, as the decode cache keys them
        st = os.stat(images.path(i))
        h.update(bytes(images.names[i]) + f":{st.st_size}:{st.st_mtime_ns}\n".encode())


DEFAULT_VAL_FRACTION, DEFAULT_VAL_CAP = 0.1, 5000


def default_val_size(n: int) -> int:
    """10 % of the training images, at most 5,000 (Fashion-MNIST's and CIFAR's 5,000 as before; a small
    ImageFolder keeps most of its images for training instead of being refused)."""
    return max(1, min(DEFAULT_VAL_CAP, int(n * DEFAULT_VAL_FRACTION)))


def split_train_val(
    dataset: ImageDataset, val_size: int | None, seed: int, budget: LabelBudget | None = None
) -> DataSplits:
    """Carve a seeded validation set out of the training set; the test set is left for reporting only.

    The split depends on ``seed`` alone, so every method trained with the same seed sees the same
    validation images, and the soft labels are built from training images the validation set
    never contains. Streamed images are split the same way: indexing ``ImageFiles`` picks files.
    A ``budget`` then keeps the labels of a stratified subset of the remaining training images
    (``data.budget``); validation and test are the same with or without it.
    """
    n = int(dataset.train_labels.shape[0])
    if val_size is None:
        val_size = default_val_size(n)
    if not 1 <= val_size < n:
        raise ReffAKDError(
            f"val_size {val_size} is out of range: it must be between 1 and {n - 1} (training set has {n} images)",
            params=("val_size",),
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    unlabelled, record = None, None
    if budget is not None:
        keep, rest = labelled_subset(dataset.train_labels[train_idx], budget, dataset.class_names)
        record = budget_record(budget, keep, int(train_idx.numel()))
        rest_idx, train_idx = train_idx[rest], train_idx[keep]
        unlabelled = Split(dataset.train_images[rest_idx], torch.full_like(dataset.train_labels[rest_idx], UNLABELLED))
    return DataSplits(
        unlabelled=unlabelled,
        budget=record,
        train=Split(dataset.train_images[train_idx], dataset.train_labels[train_idx]),
        val=Split(dataset.train_images[val_idx], dataset.train_labels[val_idx]),
        test=Split(dataset.test_images, dataset.test_labels),
        class_names=dataset.class_names,
        mean=dataset.mean,
        std=dataset.std,
        dataset=dataset.name,
        augment=dataset.augment,
        split={"seed": seed, "val_size": val_size},
    )
