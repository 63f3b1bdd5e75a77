"""Fashion-MNIST, found without network where possible, read through torchvision, never modified.

Sources, in order: ``--data-dir``; Debian's ``dataset-fashion-mnist`` package; torchvision's
download into the cache folder. torchvision reads only uncompressed files under
``ROOT/FashionMNIST/raw/``, and Debian recompressed the gz files (so torchvision's checksums fail and
it would try the network), so compressed sources are decompressed into the cache, never in place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.datasets import FashionMNIST

from ..errors import ReffAKDError
from ..io import write_with
from .dataset import ImageDataset, channel_stats

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NATIVE_SIZE = 28


def default_cache_dir() -> Path:
    """``$REFFAKD_CACHE`` or ``~/.cache/reffakd``: decompressed copies and downloads live here."""
    return Path(os.environ.get("REFFAKD_CACHE", Path.home() / ".cache" / "reffakd"))


def _find_files(folder: Path) -> dict[str, Path] | None:
    """Map each raw file name to an existing file (uncompressed preferred, else .gz), or None."""
    found: dict[str, Path] = {}
    for sub in (folder / "FashionMNIST" / "raw", folder):
        for name in RAW_FILES:
            if name in found:
                continue
            for candidate in (sub / name, sub / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
    return found if len(found) == len(RAW_FILES) else None


def _materialise(files: dict[str, Path], cache_dir: Path) -> Path:
    """Return a torchvision root whose ``FashionMNIST/raw`` holds the uncompressed files.

    Already-uncompressed files in the torchvision layout are used where they are; anything else
    is decompressed (or linked) into a cache folder named after the source, so the source is read only.
    """
    parents = {p.parent for p in files.values()}
    if all(not p.name.endswith(".gz") for p in files.values()) and len(parents) == 1:
        parent = parents.pop()
        if parent.name == "raw" and parent.parent.name == "FashionMNIST":
            return parent.parent.parent
    # The key covers each source's path, size and mtime: a replaced source gets a fresh copy.
    stamp = "|".join(f"{files[n].resolve()}:{files[n].stat().st_size}:{files[n].stat().st_mtime_ns}" for n in RAW_FILES)
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    root = cache_dir / "fashion-mnist" / key
    raw = root / "FashionMNIST" / "raw"
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


def _read(root: Path, origin: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]:
    try:
        train = FashionMNIST(str(root), train=True, download=False)
        test = FashionMNIST(str(root), train=False, download=False)
    except Exception as exc:  # torchvision raises several types for malformed IDX files
        raise ReffAKDError(f"corrupt Fashion-MNIST files from {origin} ({root / 'FashionMNIST' / 'raw'}): {str(exc) or type(exc).__name__}; expected the four IDX files of 60,000 + 10,000 28x28 images") from None
    for images, labels, what in ((train.data, train.targets, "train"), (test.data, test.targets, "t10k")):
        if images.ndim != 3 or tuple(images.shape[1:]) != (NATIVE_SIZE, NATIVE_SIZE) or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ReffAKDError(
                f"corrupt Fashion-MNIST {what} files from {origin}: images {tuple(images.shape)}, labels {tuple(labels.shape)}; "
                f"expected N 28x28 images with N labels (N = 60,000 train, 10,000 test for the real set)"
            )
    for labels in (train.targets, test.targets):
        if labels.min() < 0 or labels.max() > 9:
            raise ReffAKDError(f"corrupt Fashion-MNIST labels from {origin}: values outside 0..9")
    return train.data, train.targets, test.data, test.targets, tuple(train.classes)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, size, size) uint8, bilinear, done once at load time."""
    x = images.unsqueeze(1)
    if size == images.shape[-1]:
        return x.contiguous()
    out = torch.empty((x.shape[0], 1, size, size), dtype=torch.uint8)
    for lo in range(0, x.shape[0], 10_000):
        chunk = F.interpolate(x[lo : lo + 10_000].float(), size=(size, size), mode="bilinear", align_corners=False)
        out[lo : lo + 10_000] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def locate_fashion_mnist(data_dir: str | os.PathLike[str] | None, cache_dir: Path, download: bool = True) -> tuple[Path, str]:
    """Return (torchvision root, description of the source) or one error naming every place tried."""
    tried: list[str] = []
    if data_dir is not None:
        files = _find_files(Path(data_dir))
        if files is not None:
            return _materialise(files, cache_dir), f"--data-dir {data_dir}"
        tried.append(f"--data-dir {data_dir} (no train/t10k IDX files, raw or .gz, in it or in its FashionMNIST/raw)")
    else:
        tried.append("--data-dir (not given)")
    files = _find_files(DEBIAN_DIR)
    if files is not None:
        return _materialise(files, cache_dir), f"Debian package dataset-fashion-mnist ({DEBIAN_DIR})"
    tried.append(f"{DEBIAN_DIR} (install with: apt-get install dataset-fashion-mnist)")
    download_root = cache_dir / "fashion-mnist" / "download"
    if download:
        try:
            FashionMNIST(str(download_root), train=True, download=True)
            FashionMNIST(str(download_root), train=False, download=True)
            return download_root, f"torchvision download ({download_root})"
        except Exception as exc:  # network errors come in many types
            tried.append(f"torchvision download into {download_root} ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else 'failed'})")
    else:
        tried.append(f"torchvision download into {download_root} (disabled)")
    raise ReffAKDError("Fashion-MNIST not found; tried " + "; ".join(tried))


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
    train_x, train_y, test_x, test_y, classes = _read(root, origin)
    train_images = _resize(train_x, image_size)
    mean, std = channel_stats(train_images)
    return ImageDataset(
        name="fashion-mnist",
        train_images=train_images,
        train_labels=train_y.long(),
        test_images=_resize(test_x, image_size),
        test_labels=test_y.long(),
        class_names=classes,
        source=origin,
        mean=mean,
        std=std,
    )
