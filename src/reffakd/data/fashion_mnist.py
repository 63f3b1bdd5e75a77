"""Fashion-MNIST (and MNIST), found without network where possible, read in torchvision's layout, never modified.

Sources, in order: ``data_dir``; Debian's ``dataset-fashion-mnist`` package (Fashion-MNIST only);
torchvision's download into the cache folder. The files are read from torchvision's layout, the
uncompressed IDX files under ``ROOT/<Class>/raw/``; Debian recompressed the gz files (so
torchvision's checksums fail and it would try the network), so compressed sources are decompressed
into the cache, never in place. The IDX format is read here (``read_idx``), not through torchvision,
whose import costs seconds; torchvision is imported only to download. Both datasets share these
functions, parameterised by an ``IdxSpec``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ReffAKDError
from ..io import write_with
from .augment import BatchAugment
from .cache import default_cache_dir, given_folder
from .dataset import ImageDataset, channel_stats, resize_uint8

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NATIVE_SIZE = 28


@dataclass(frozen=True)
class IdxSpec:
    """One IDX dataset: its registry/cache name, its title in messages, torchvision's dataset class (its folder
    and its downloader), the class names, its augmentation."""

    name: str
    title: str
    folder: str  # torchvision's class name, its folder under the root: ``<folder>/raw``
    classes: tuple[str, ...]
    augment: BatchAugment
    debian_package: str | None = None

    def download(self, root: Path) -> None:
        """torchvision's download of both splits into ``root`` (imported here: it takes seconds)."""
        import torchvision.datasets

        reader = getattr(torchvision.datasets, self.folder)
        reader(str(root), train=True, download=True)
        reader(str(root), train=False, download=True)


FASHION_MNIST = IdxSpec(
    "fashion-mnist",
    "Fashion-MNIST",
    "FashionMNIST",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # Padding by 2, not 4: chosen on validation with every label and with 100 per class (docs/RESULTS.md, "A CE
    # baseline at the published level"); by 4 cost LeNet-5 1.1 validation points with every label.
    BatchAugment(pad=2, flip=True),
    "dataset-fashion-mnist",
)
# Digits are not mirror-symmetric (a flipped 2, 3, 7 is no digit), so MNIST is cropped but never flipped.
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_SPEC = IdxSpec(
    "mnist", "MNIST", "MNIST", tuple(f"{i} - {d}" for i, d in enumerate(DIGITS)), BatchAugment(pad=4, flip=False)
)
IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (magic 0, 0, 0x08, ndim; big-endian uint32 sizes; data), gzip-compressed
    when its name ends in ``.gz``."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise ValueError(f"{path.name}: not an IDX file of {ndim}-dimensional unsigned bytes (header {raw[:4]!r})")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    size, offset = int(np.prod(dims)), 4 + 4 * ndim
    if len(raw) != offset + size:
        raise ValueError(f"{path.name}: {len(raw) - offset} data bytes for shape {tuple(dims.tolist())}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims.tolist()).copy())


def _find_files(folder: Path, spec: IdxSpec = FASHION_MNIST) -> dict[str, Path] | None:
    """Map each raw file name to an existing file (uncompressed preferred, else .gz), or None."""
    found: dict[str, Path] = {}
    for sub in (folder / spec.folder / "raw", folder):
        for name in RAW_FILES:
            if name in found:
                continue
            for candidate in (sub / name, sub / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
    return found if len(found) == len(RAW_FILES) else None


def _materialise(files: dict[str, Path], cache_dir: Path, spec: IdxSpec = FASHION_MNIST) -> Path | dict[str, Path]:
    """Return a torchvision root whose ``<Class>/raw`` holds the uncompressed files.

    Already-uncompressed files in the torchvision layout are used where they are; anything else
    is decompressed (or linked) into a cache folder named after the source, so the source is read only.
    The cache is optional: when it cannot be written (read-only, full), the source files themselves.
    """
    try:
        return _copy_to_cache(files, cache_dir, spec)
    except OSError:
        return files


def _copy_to_cache(files: dict[str, Path], cache_dir: Path, spec: IdxSpec) -> Path:
    parents = {p.parent for p in files.values()}
    if all(not p.name.endswith(".gz") for p in files.values()) and len(parents) == 1:
        parent = parents.pop()
        if parent.name == "raw" and parent.parent.name == spec.folder:
            return parent.parent.parent
    # The key covers each source's path, size and mtime: a replaced source gets a fresh copy.
    stamp = "|".join(f"{files[n].resolve()}:{files[n].stat().st_size}:{files[n].stat().st_mtime_ns}" for n in RAW_FILES)
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    root = cache_dir / spec.name / key
    raw = root / spec.folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        src, dst = files[name], raw / name
        if dst.exists():
            continue
        if src.name.endswith(".gz"):

            def unzip(tmp: Path, src: Path = src) -> None:
                try:
                    with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                except (OSError, EOFError, zlib.error) as exc:
                    raise ReffAKDError(f"corrupt data file {src}: {exc}; expected a gzip-compressed IDX file") from None

            write_with(dst, unzip)
        else:
            write_with(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
    return root


def _read(
    root: Path | dict[str, Path], origin: str, spec: IdxSpec = FASHION_MNIST
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """The four IDX files under the torchvision ``root``, or the files themselves (name -> path)."""
    files = root if isinstance(root, dict) else {n: root / spec.folder / "raw" / n for n in RAW_FILES}
    where = files[RAW_FILES[0]].parent
    try:
        train_x, train_y, test_x, test_y = (
            read_idx(files[f"{split}-{kind}-idx{n}-ubyte"], n)
            for split in ("train", "t10k")
            for kind, n in (("images", 3), ("labels", 1))
        )
    except (OSError, ValueError) as exc:
        raise ReffAKDError(
            f"corrupt {spec.title} files from {origin} ({where}): "
            f"{str(exc) or type(exc).__name__}; expected the four IDX files of 60,000 + 10,000 28x28 images"
        ) from None
    train_y, test_y = train_y.long(), test_y.long()
    for images, labels, what in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if (
            images.ndim != 3
            or tuple(images.shape[1:]) != (NATIVE_SIZE, NATIVE_SIZE)
            or images.shape[0] != labels.shape[0]
            or images.shape[0] == 0
        ):
            raise ReffAKDError(
                f"corrupt {spec.title} {what} files from {origin}: "
                f"images {tuple(images.shape)}, labels {tuple(labels.shape)}; "
                f"expected N 28x28 images with N labels (N = 60,000 train, 10,000 test for the real set)"
            )
    for labels in (train_y, test_y):
        if labels.min() < 0 or labels.max() > 9:
            raise ReffAKDError(f"corrupt {spec.title} labels from {origin}: values outside 0..9")
    check_which(spec, train_y, origin)
    return train_x, train_y, test_x, test_y, spec.classes


def check_which(spec: IdxSpec, train_labels: torch.Tensor, origin: str) -> None:
    """MNIST and Fashion-MNIST share file names and shapes; their full training labels tell them apart: Fashion-MNIST
    has exactly 6,000 images of each class, MNIST from 5,421 to 6,742. A full set of the other one is refused (a
    run would name digits as clothes, or the reverse); smaller files (a user's own subset) are not judged."""
    if train_labels.numel() != 60_000:
        return
    balanced = bool((torch.bincount(train_labels, minlength=10) == 6000).all())
    other = {"fashion-mnist": (not balanced, "mnist", "MNIST"), "mnist": (balanced, "fashion-mnist", "Fashion-MNIST")}
    wrong, name, title = other.get(spec.name, (False, "", ""))
    if wrong:
        raise ReffAKDError(
            f"the files from {origin} are {title}, not {spec.title} (their training labels: "
            f"{'6,000 of each class' if balanced else 'uneven class counts'}); give dataset {name}",
            params=("dataset",),
        )


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, size, size) uint8, bilinear, done once at load time."""
    return resize_uint8(images.unsqueeze(1), (size, size))


def locate_idx(
    spec: IdxSpec,
    data_dir: str | os.PathLike[str] | None,
    cache_dir: Path,
    download: bool = True,
    debian_dir: Path | None = None,
) -> tuple[Path | dict[str, Path], str]:
    """Return (torchvision root or the files themselves, description of the source) or one error naming every place
    tried; a ``data_dir`` given is the only place tried: an explicit path never falls back to another copy."""
    tried: list[str] = []
    if data_dir is not None:
        files = _find_files(given_folder(data_dir, "data_dir"), spec)
        if files is not None:
            return _materialise(files, cache_dir, spec), f"--data-dir {data_dir}"
        raise ReffAKDError(
            f"data_dir {data_dir} holds no {spec.title} files: expected the four train/t10k IDX files "
            f"({', '.join(RAW_FILES)}), raw or .gz, in it or in its {spec.folder}/raw",
            params=("data_dir",),
        )
    else:
        tried.append("data_dir (not given)")
    if debian_dir is not None:
        files = _find_files(debian_dir, spec)
        if files is not None:
            return _materialise(files, cache_dir, spec), f"Debian package {spec.debian_package} ({debian_dir})"
        tried.append(f"{debian_dir} (install with: apt-get install {spec.debian_package})")
    download_root = cache_dir / spec.name / "download"
    if download:
        try:
            spec.download(download_root)
            return download_root, f"torchvision download ({download_root})"
        except Exception as exc:  # network errors come in many types
            reason = str(exc).splitlines()[0][:80] if str(exc) else "failed"
            tried.append(f"torchvision download into {download_root} ({type(exc).__name__}: {reason})")
    else:
        tried.append(f"torchvision download into {download_root} (disabled)")
    raise ReffAKDError(f"{spec.title} not found; tried " + "; ".join(tried), params=("data_dir",))


def locate_fashion_mnist(
    data_dir: str | os.PathLike[str] | None, cache_dir: Path, download: bool = True
) -> tuple[Path | dict[str, Path], str]:
    """``locate_idx`` for Fashion-MNIST, with Debian's copy between ``data_dir`` and the download."""
    return locate_idx(FASHION_MNIST, data_dir, cache_dir, download, DEBIAN_DIR)


def load_idx_dataset(spec: IdxSpec, root: Path | dict[str, Path], origin: str, image_size: int) -> ImageDataset:
    """Read the four IDX files under ``root`` and resize 28 -> ``image_size`` once."""
    train_x, train_y, test_x, test_y, classes = _read(root, origin, spec)
    train_images = _resize(train_x, image_size)
    mean, std = channel_stats(train_images)
    return ImageDataset(
        name=spec.name,
        train_images=train_images,
        train_labels=train_y.long(),
        test_images=_resize(test_x, image_size),
        test_labels=test_y.long(),
        class_names=classes,
        source=origin,
        mean=mean,
        std=std,
        augment=spec.augment,
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
    download: bool = True,
) -> ImageDataset:
    """Load Fashion-MNIST as uint8 tensors, resized 28 -> ``image_size`` (32 in the paper)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root, origin = locate_fashion_mnist(data_dir, cache, download)
    return load_idx_dataset(FASHION_MNIST, root, origin, image_size)
