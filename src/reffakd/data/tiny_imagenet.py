"""Tiny ImageNet from its official tree, read in place and never modified.

The authors' notebook moves the validation images into class folders so that torchvision's
ImageFolder can read them; here ``val/val_annotations.txt`` gives each image's class instead, and
the official validation set serves as the test set (the test images have no labels). Classes are
the sorted wnids (ImageFolder's order on ``train/``), named by the first synonym in ``words.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ReffAKDError
from .augment import BatchAugment
from .cache import default_cache_dir, given_folder
from .dataset import ImageDataset
from .files import dataset_from_files
from .images import IMAGE_EXTENSIONS, ImageFiles

FOLDER = "tiny-imagenet-200"
NATIVE_SIZE = 64


def find_root(data_dir: str | os.PathLike[str] | None) -> Path:
    """``DIR/tiny-imagenet-200`` or ``DIR`` itself, whichever holds ``wnids.txt``."""
    if data_dir is None:
        raise ReffAKDError(
            f"tiny-imagenet needs data_dir: the unzipped {FOLDER}.zip "
            "(a folder with wnids.txt, words.txt, train/ and val/)",
            params=("data_dir",),
        )
    d = given_folder(data_dir, "data_dir")
    for root in (d / FOLDER, d):
        if (root / "wnids.txt").is_file():
            return root
    raise ReffAKDError(
        f"data_dir {data_dir} is not a Tiny ImageNet tree: no wnids.txt in it or in its {FOLDER}/; "
        f"expected the unzipped {FOLDER}.zip",
        params=("data_dir",),
    )


def _read_text(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise ReffAKDError(f"Tiny ImageNet {what} {path} is missing; expected the official {FOLDER} tree")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReffAKDError(f"Tiny ImageNet {what} {path} is unreadable: {exc}") from None


def read_classes(root: Path) -> tuple[list[str], tuple[str, ...]]:
    """(sorted wnids, their names): the first synonym of each wnid in words.txt, made unique with the wnid."""
    wnids = sorted({line.strip() for line in _read_text(root / "wnids.txt", "class list") if line.strip()})
    if len(wnids) < 2:
        raise ReffAKDError(
            f"Tiny ImageNet class list {root / 'wnids.txt'} names {len(wnids)} class(es); "
            "expected 200 wnids, one a line"
        )
    words: dict[str, str] = {}
    for line in _read_text(root / "words.txt", "class names file"):
        wnid, _, synonyms = line.partition("\t")
        if wnid in wnids:
            words[wnid] = synonyms.split(",")[0].strip()
    missing = [w for w in wnids if not words.get(w)]
    if missing:
        raise ReffAKDError(
            f"Tiny ImageNet {root / 'words.txt'} has no name for wnid {missing[0]} ({len(missing)} wnids unnamed)"
        )
    names = [words[w] for w in wnids]
    dup = {n for n in names if names.count(n) > 1}
    return wnids, tuple(f"{n} ({w})" if n in dup else n for n, w in zip(names, wnids))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def list_train(root: Path, wnids: list[str]) -> tuple[list[str], list[int]]:
    """``train/<wnid>/images/*`` for each wnid, as paths relative to the root, sorted."""
    names: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise ReffAKDError(
                f"Tiny ImageNet training folder {folder} is missing; "
                "expected train/<wnid>/images/ for every wnid in wnids.txt"
            )
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        if not files:
            raise ReffAKDError(
                f"Tiny ImageNet training folder {folder} holds no images; expected {wnid}_<n>.JPEG files"
            )
        names += [f"train/{wnid}/images/{f}" for f in files]
        labels += [label] * len(files)
    return names, labels


def list_val(root: Path, wnids: list[str]) -> tuple[list[str], list[int]]:
    """The validation images and their classes from ``val/val_annotations.txt`` (file, wnid, box)."""
    path = root / "val" / "val_annotations.txt"
    index = {w: i for i, w in enumerate(wnids)}
    names: list[str] = []
    labels: list[int] = []
    for n, line in enumerate(_read_text(path, "annotation file"), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            raise ReffAKDError(
                f"Tiny ImageNet annotation file {path} line {n} is malformed: {line[:60]!r}; "
                "expected <file>\\t<wnid>\\t<box>"
            )
        file, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise ReffAKDError(
                f"Tiny ImageNet annotation file {path} line {n} names wnid {wnid!r}, "
                f"which is not in {root / 'wnids.txt'}"
            )
        if "/" in file or "\\" in file or file in ("", ".", ".."):
            raise ReffAKDError(
                f"Tiny ImageNet annotation file {path} line {n} names {file!r}; expected a file name in val/images/"
            )
        if not (root / "val" / "images" / file).is_file():
            raise ReffAKDError(
                f"Tiny ImageNet validation image {root / 'val' / 'images' / file} is missing "
                f"(named on line {n} of {path})"
            )
        names.append(f"val/images/{file}")
        labels.append(index[wnid])
    if not names:
        raise ReffAKDError(f"Tiny ImageNet annotation file {path} lists no images")
    return names, labels


def load_tiny_imagenet(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int = NATIVE_SIZE,
    streaming: bool | None = None,
    download: bool = True,
    num_workers: int | None = None,
) -> ImageDataset:
    """Tiny ImageNet: 100,000 train + 10,000 val (the test set here) RGB images, 200 classes.

    Grayscale originals are converted to RGB; images are resized only if not ``image_size``.
    There is no download (``download`` is accepted for the registry's common signature).
    Augmentation: the paper's crop, flip and 15-degree rotation, with padding scaled to the
    image (8 at 64x64): the same 1/8 shift as CIFAR's 4 at 32x32.
    """
    del download
    root = find_root(data_dir)
    wnids, class_names = read_classes(root)
    train_names, train_labels = list_train(root, wnids)
    test_names, test_labels = list_val(root, wnids)
    size = (image_size, image_size)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return dataset_from_files(
        "tiny-imagenet",
        ImageFiles(root, train_names, 3, size),
        train_labels,
        ImageFiles(root, test_names, 3, size),
        test_labels,
        class_names=class_names,
        source=f"--data-dir {data_dir} (test set: the official validation images)",
        augment=BatchAugment(pad=max(1, image_size // 8), flip=True, rotation=15.0),
        cache_dir=cache,
        streaming=streaming,
        num_workers=num_workers,
    )
