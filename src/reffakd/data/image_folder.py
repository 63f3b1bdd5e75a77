"""Any ImageFolder tree: one sub-folder per class, read in place and never modified.

``DIR/<class>/.../*.png`` (any depth below the class folder, torchvision's image extensions).
When DIR's only sub-folders are ``train`` (+ ``test`` or ``val``), the classes are under
``DIR/train``. The test set comes from ``test_dir``, else ``DIR/test`` (or ``DIR/val``), else it is
carved from the training images: a seeded ``test_fraction`` of each class.
Class names are the folder names (spaces and non-ASCII are fine), sorted as torchvision does.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import torch

from ..errors import ReffAKDError
from .augment import BatchAugment
from .cache import default_cache_dir, given_folder
from .dataset import TENSOR_RESIZED, ImageDataset, read_image_as_trained
from .files import dataset_from_files
from .images import IMAGE_EXTENSIONS, ImageFiles, probe_images


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise ReffAKDError(
            f"cannot read folder {folder} ({exc.strerror or exc}); make it readable or remove it"
        ) from None


def _linked_folder(path: Path) -> ReffAKDError:
    """A symlinked folder inside the tree is not followed: a loop (``ln -s .. a/loop``) would count images again
    under another class, and a link out of the tree would read images that are not the dataset's."""
    return ReffAKDError(
        f"{path} is a symbolic link to the folder {os.path.realpath(path)}; reffakd does not follow linked folders "
        "inside a dataset (a loop or a second copy relabels images): replace the link by the folder it names, "
        "or link the image files instead"
    )


def class_folders(root: Path) -> list[str]:
    """Sorted visible sub-folders (hidden ones such as ``.ipynb_checkpoints`` are no classes)."""
    found = []
    for e in _scandir(root):
        if e.name.startswith(".") or not e.is_dir():
            continue
        if e.is_symlink():
            raise _linked_folder(root / e.name)
        found.append(e.name)
    return sorted(found)


def list_class(root: Path, cls: str) -> list[str]:
    """Image files under ``root/cls`` at any depth, relative to ``root``, sorted; an error if none.

    Linked folders are refused, never followed (``_linked_folder``); a linked image file is read if it leads to
    a file; a folder that cannot be read is an error, never skipped."""
    found: list[str] = []
    stack = [root / cls]
    while stack:
        folder = stack.pop()
        files, folders = [], []
        for e in _scandir(folder):
            if e.name.startswith("."):
                continue
            if e.is_dir():
                if e.is_symlink():
                    raise _linked_folder(folder / e.name)
                folders.append(e.name)
            elif _is_image(e.name):
                if not e.is_file():
                    raise ReffAKDError(f"{folder / e.name} is not an image file (a broken link?); fix it or remove it")
                files.append(e.name)
        rel = folder.relative_to(root)
        found += [str(rel / f) for f in sorted(files)]
        stack += [folder / d for d in sorted(folders, reverse=True)]
    if not found:
        raise ReffAKDError(
            f"class folder {root / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return found


def scan_tree(root: Path, what: str, params: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Class name -> image files (relative to ``root``), with one clear error for each bad layout.

    ``what`` names ``root`` in the errors; ``params``, the parameters ``what`` names (``data_dir``).
    """
    if not root.is_dir():
        raise ReffAKDError(f"{what} {root} is not a folder; expected one sub-folder of images per class", params=params)
    classes = class_folders(root)
    if len(classes) < 2:
        loose = sum(1 for e in _scandir(root) if e.is_file() and _is_image(e.name))
        if not classes and not loose:
            raise ReffAKDError(
                f"{what} {root} holds no images; expected one sub-folder of images per class", params=params
            )
        has = (
            f"only the class folder {classes[0]!r}" if classes else f"no class folders ({loose} images directly in it)"
        )
        raise ReffAKDError(f"{what} {root} has {has}; expected at least 2 sub-folders, one per class", params=params)
    return {c: list_class(root, c) for c in classes}


def unlabelled_images(folder: str | os.PathLike[str], channels: int, size: tuple[int, int]) -> ImageFiles:
    """Every image file under ``folder`` (any depth, sorted), decoded to ``channels`` x ``size``: images without
    labels, for the autoencoder only (semi-supervised soft labels)."""
    root = Path(folder)
    if not root.is_dir():
        raise ReffAKDError(
            f"unlabelled image folder {root} does not exist or is not a folder", params=("unlabelled_dir",)
        )
    try:
        names = list_class(root.parent, root.name)
    except ReffAKDError as exc:
        if "holds no images" in str(exc):
            raise ReffAKDError(
                f"unlabelled image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})",
                params=("unlabelled_dir",),
            ) from None
        raise
    return ImageFiles(root.parent, names, channels, size)


_DECODED: dict[tuple[object, ...], torch.Tensor] = {}  # the last unlabelled folder decoded (checked, then trained on)


def decoded_unlabelled(
    folder: str | os.PathLike[str], channels: int, size: tuple[int, int], dataset: str | None = None
) -> tuple[ImageFiles, torch.Tensor]:
    """``unlabelled_images`` and their pixels: every file decoded, so a file PIL cannot decode is one line naming it,
    and resized as ``dataset``'s own images were (``read_image_as_trained``: MNIST's and CIFAR's by tensor
    interpolation), so that the autoencoder sees both alike and a copy of a dataset image has its pixels.

    The check before a run folder exists decodes the folder, and the autoencoder then trains on it: the last folder
    decoded is kept (one entry, dropped when taken), as long as no file's name, size or modification time changed."""
    files = unlabelled_images(folder, channels, size)
    stats = []
    for i in range(len(files)):
        st = files.path(i).stat()
        stats.append((files.names[i], st.st_size, st.st_mtime_ns))
    key = (str(files.root.resolve()), channels, tuple(size), dataset, tuple(stats))
    images = _DECODED.pop(key, None)
    if images is None and dataset in TENSOR_RESIZED:
        images = torch.stack([read_image_as_trained(files.path(i), channels, size, dataset) for i in range(len(files))])
    if images is None:
        images = files.to_tensor()
        _DECODED.clear()
        _DECODED[key] = images
    return files, images


def image_digests(images: torch.Tensor) -> list[bytes]:
    """A 128-bit BLAKE2b digest of each uint8 (C, H, W) image's decoded pixels."""
    import hashlib

    rows = images.reshape(images.shape[0], -1).contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def check_unlabelled_apart(files: ImageFiles, images: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
    """Refuse an unlabelled image whose decoded pixels are those of an image of ``parts`` (name -> uint8 images at the
    same channels and size): a copy of a labelled, validation or test image in another folder, under another name or
    in another lossless format, would give the autoencoder the images it must not see."""
    seen = {d: i for i, d in enumerate(image_digests(images))}
    for name, part in parts.items():
        if part.shape[1:] != images.shape[1:]:
            continue
        for j, digest in enumerate(image_digests(part)):
            i = seen.get(digest)
            if i is not None and torch.equal(images[i], part[j]):
                raise ReffAKDError(
                    f"unlabelled image {files.path(i)} is {name} image {j} of the dataset (the same decoded pixels): "
                    "the autoencoder must not train on labelled, validation or test images; remove the copy from "
                    "unlabelled_dir",
                    params=("unlabelled_dir",),
                )


def default_image_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (height, width), each rounded to the nearest multiple of 8 (at least 8).

    Multiples of 8 because the autoencoder halves the size three times; the classifiers accept
    any size from 16 (LeNet-5) or 8 (ResNets) up. Ties go to the larger image.
    """
    (h, w), _ = max(Counter(sizes).items(), key=lambda item: (item[1], item[0]))
    return max(8, int(h / 8 + 0.5) * 8), max(8, int(w / 8 + 0.5) * 8)


def _carve(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train positions, test positions): a seeded ``fraction`` of each class (rounded, at most all but one)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    train, test = [], []
    for c in range(int(y.max()) + 1):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = min(len(idx) - 1, int(len(idx) * fraction + 0.5))
        test += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(test)


def _normalise_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if h < 1 or w < 1:
        raise ReffAKDError(f"image size {h}x{w} is not allowed; expected positive height and width")
    return int(h), int(w)


def overlap(train_root: Path, test_root: Path, data_dir: object, test_dir: object) -> None:
    """Refuse a test folder that is the training folder, inside it or holding it: its images would be scored as
    unseen test images while being trained on."""
    a, b = train_root.resolve(), test_root.resolve()
    if a == b or a in b.parents or b in a.parents:
        how = "is" if a == b else "is inside" if a in b.parents else "holds"
        raise ReffAKDError(
            f"test_dir {test_dir} {how} the training images of data_dir {data_dir}: test images must be images the "
            "model never trains on; give a separate test_dir, or leave it out to hold out test_fraction",
            params=("test_dir", "data_dir", "test_fraction"),
        )


def load_imagefolder(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    test_dir: str | os.PathLike[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    streaming: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    num_workers: int | None = None,
) -> ImageDataset:
    """An ImageFolder tree as an ``ImageDataset`` (in memory, or streamed when too big; see ``streaming``).

    Channels: grayscale if every image is grayscale, else RGB. Image size: ``image_size`` or
    ``default_image_size`` of the training images. Augmentation: random crop with 1/8 of the size
    as padding, and horizontal flip; no rotation (it is the paper's choice for its own datasets).
    ``download`` is accepted for the registry's common signature and ignored.
    """
    del download
    if data_dir is None:
        raise ReffAKDError(
            "imagefolder needs data_dir: a folder with one sub-folder of images per class", params=("data_dir",)
        )
    d = given_folder(data_dir, "data_dir")
    # DIR/train (+ DIR/test or DIR/val) when those are DIR's only sub-folders; else DIR's sub-folders are the classes.
    split_layout = d.is_dir() and (d / "train").is_dir() and set(class_folders(d)) <= {"train", "test", "val"}
    train_root = d / "train" if split_layout else d
    if test_dir is not None:
        test_root: Path | None = given_folder(test_dir, "test_dir")
        overlap(train_root, test_root, data_dir, test_dir)
    else:
        test_root = next((d / t for t in ("test", "val") if (d / t).is_dir()), None) if split_layout else None
    if train_root == d:
        train_tree = scan_tree(train_root, "data_dir", params=("data_dir",))
    else:
        train_tree = scan_tree(train_root, "training folder")
    classes = tuple(train_tree)
    train_names = [n for c in classes for n in train_tree[c]]
    train_labels = [i for i, c in enumerate(classes) for _ in train_tree[c]]
    if test_root is not None:
        test_tree = scan_tree(test_root, "test folder")
        unknown = [c for c in test_tree if c not in train_tree]
        if unknown:
            raise ReffAKDError(
                f"test folder {test_root} has class folder {unknown[0]!r}, which {train_root} lacks; "
                "test classes must be training classes"
            )
        index = {c: i for i, c in enumerate(classes)}
        test_names = [n for c in test_tree for n in test_tree[c]]
        test_labels = [index[c] for c in test_tree for _ in test_tree[c]]
        source = f"--data-dir {train_root} (test set: {test_root})"
    else:
        if not 0 < test_fraction < 1:
            raise ReffAKDError(f"test fraction {test_fraction} is out of range; expected a number between 0 and 1")
        keep, held = _carve(train_labels, test_fraction, split_seed)
        if not held:
            raise ReffAKDError(
                f"data_dir {d} has too few images to carve a test set "
                f"({len(train_names)} images, test fraction {test_fraction})",
                params=("data_dir",),
            )
        test_names, test_labels = [train_names[i] for i in held], [train_labels[i] for i in held]
        train_names, train_labels = [train_names[i] for i in keep], [train_labels[i] for i in keep]
        test_root = train_root
        source = (
            f"--data-dir {d} (no test folder: test set carved from it, "
            f"{test_fraction:g} of each class, seed {split_seed})"
        )
    train_probes = probe_images([train_root / n for n in train_names])
    test_probes = probe_images([test_root / n for n in test_names])
    channels = 1 if all(gray for _, gray in (*train_probes, *test_probes)) else 3
    size = _normalise_size(image_size) if image_size is not None else default_image_size([s for s, _ in train_probes])
    h, w = size
    return dataset_from_files(
        "imagefolder",
        ImageFiles(train_root, train_names, channels, size),
        train_labels,
        ImageFiles(test_root, test_names, channels, size),
        test_labels,
        class_names=classes,
        source=f"{source}, {'grayscale' if channels == 1 else 'RGB'} {h}x{w}",
        augment=BatchAugment(pad=max(1, min(h, w) // 8), flip=True),
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        streaming=streaming,
        num_workers=num_workers,
    )
