"""``reffakd evaluate``: top-1/top-5 of any model ``open_model`` reads, on a dataset's split or a labelled folder.

Every model is fed what a client would feed it: uint8 images at its input size (the dataset loaded at that size;
a folder's files read as ``predict`` reads them), so a checkpoint and its exports are scored on the same pixels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn as nn

from ..data.images import IMAGE_EXTENSIONS
from ..engine.metrics import accuracy, evaluate_counts
from ..errors import ReffAKDError
from ..io import read_json
from .model import DeployedModel
from .predict import read_image

# Characters a folder name cannot hold on some system (Windows' reserved ones, the path separators, controls).
NOT_IN_FOLDER_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f]')


def folder_name(class_name: str) -> str:
    """The sub-folder a class's images are in: the class name with every character a folder name cannot hold
    replaced by ``_`` ("T-shirt/top" -> "T-shirt_top"); "", "." and ".." become as many underscores (at least one).
    Matched case-sensitively, exactly."""
    name = NOT_IN_FOLDER_NAMES.sub("_", class_name)
    return "_" * max(1, len(name)) if name in ("", ".", "..") else name


class _Scores(nn.Module):
    """``evaluate_counts`` takes a module: the model's log-scores behind one."""

    def __init__(self, model: DeployedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.log_scores(pixels)


def score(model: DeployedModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Top-1, top-5 and mean cross-entropy of ``model`` over (uint8 images, labels) batches."""
    model.require_classes()
    return accuracy(evaluate_counts(_Scores(model), batches))


def tensor_batches(images: torch.Tensor, labels: torch.Tensor, size: int = 512) -> Iterator[tuple[torch.Tensor, ...]]:
    """A split's images (in memory, or files decoded when indexed) in order, ``size`` at a time."""
    n = int(labels.shape[0])
    for lo in range(0, n, size):
        index = torch.arange(lo, min(n, lo + size))
        yield images[index], labels[index]


def labelled_folder(
    folder: str | os.PathLike[str], class_names: list[str], class_map: str | None = None
) -> list[tuple[Path, int]]:
    """Each image file under ``folder``'s class sub-folders (any depth) with its class index. A sub-folder is a class
    by ``folder_name`` of the class, or by ``class_map`` (JSON: sub-folder -> class name); a sub-folder that is no
    class, a class with no sub-folder and an image outside the sub-folders are named in one line."""
    from .predict import _folder_images

    root = Path(folder)
    if not root.is_dir():
        raise ReffAKDError(f"folder {root} is not a folder; expected one sub-folder per class", params=("folder",))
    if class_map is not None:
        mapping = read_json(class_map, "class map", "you: a JSON object, sub-folder name -> class name")
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ReffAKDError(f"class map {class_map} must be a JSON object of sub-folder name -> class name",
                               params=("class_map",))  # fmt: skip
        unknown = sorted(set(mapping.values()) - set(class_names))
        if unknown:
            raise ReffAKDError(f"class map {class_map} names classes the model does not have: {unknown[:5]}; its "
                               f"classes: {class_names[:10]}", params=("class_map",))  # fmt: skip
        index = {name: class_names.index(cls) for name, cls in mapping.items()}
    else:
        index = {}
        for i, cls in enumerate(class_names):
            name = folder_name(cls)
            if name in index:
                raise ReffAKDError(
                    f"classes {class_names[index[name]]!r} and {cls!r} both need sub-folder {name!r}; give "
                    "class_map to say which folder is which class",
                    params=("class_map",),
                )
            index[name] = i
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith("."))  # fmt: skip
    if loose:  # an image with no class folder has no label: scoring without it would score another set
        raise ReffAKDError(
            f"folder {root} holds {len(loose)} image file(s) outside any class sub-folder ({loose[:3]}); move each "
            "into its class's sub-folder, or out of the folder",
            params=("folder",),
        )
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    extra = [name for name in present if name not in index]
    missing = [class_names[i] for name, i in index.items() if name not in present]
    missing = [c for c in class_names if c in missing]  # in the model's order
    if extra or missing:
        parts = ([f"sub-folders with no class: {extra[:10]}"] if extra else []) + (
            [f"classes with no sub-folder: {missing[:10]} (expected {[folder_name(c) for c in missing[:10]]})"]
            if missing
            else []
        )
        raise ReffAKDError(f"folder {root} does not match the model's classes: {'; '.join(parts)}; sub-folders are "
                           "named as the class with / \\ : * ? \" < > | and control characters as _, or give "
                           "class_map", params=("folder",))  # fmt: skip
    found: list[tuple[Path, int]] = []
    for name in present:
        files = sorted(_folder_images(root / name))
        found += [(p, index[name]) for p in files]
    if not found:
        raise ReffAKDError(f"folder {root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class "
                           "sub-folders", params=("folder",))  # fmt: skip
    return found


def folder_batches(
    model: DeployedModel, files: list[tuple[Path, int]], size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The files read as ``predict`` reads them (to the model's channels and input size); an unreadable one stops the
    evaluation in one line (a score over the readable ones only would say something else)."""
    for lo in range(0, len(files), size):
        chunk = files[lo : lo + size]
        pixels = [read_image(p, model.channels, model.size, model.dataset)[0] for p, _ in chunk]
        yield torch.stack(pixels), torch.tensor([label for _, label in chunk], dtype=torch.int64)
