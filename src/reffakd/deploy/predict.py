"""``reffakd predict``: top-k classes of image files from any model ``model.open_model`` reads (a checkpoint, an
exported ``model.onnx`` or ``model.pt2``).

Images are read as at training (``data.dataset.read_image_as_trained``: converted to the model's channels, resized
to its input size as the dataset's loader resized), and what was done to each is said in the output. One
unreadable image is one error line naming it; the others still get their predictions.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import read_image_as_trained
from ..data.images import IMAGE_EXTENSIONS, probe_image
from ..errors import ReffAKDError
from ..io import write_text_new
from ..models.checkpoint import MAX_CLASSES
from .model import DeployedModel


@dataclass
class Prediction:
    """One image's result: its top-k (class, probability), or the one-line reason it could not be read."""

    file: str
    size: tuple[int, int] | None = None  # the file's own (height, width)
    preprocessing: str = ""
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their image files (any depth, sorted, hidden ones skipped).

    A path that does not exist stays in the list: it is reported as that image's error, like an unreadable one. So
    does what a folder holds but cannot be read: a broken link named like an image, a symbolic link to a folder (not
    followed: a loop would never end) and a folder that cannot be listed (``read_image`` says which).
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.append(path)
            continue
        inside = _folder_images(path)
        if not inside:
            raise ReffAKDError(f"folder {path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        found.extend(sorted(inside))
    return found


def _folder_images(folder: Path) -> list[Path]:
    """The image files under ``folder``, hidden ones skipped, and what could not be walked (see ``image_files``)."""
    inside: list[Path] = []

    def unlisted(exc: OSError) -> None:
        inside.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, onerror=unlisted):
        here = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        inside += [here / d for d in dirs if (here / d).is_symlink()]  # listed by walk, never entered
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        inside += [here / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return inside


def read_image(
    path: Path, channels: int, size: tuple[int, int], dataset: str | None
) -> tuple[torch.Tensor, tuple[int, int], str]:
    """uint8 (C, H, W) as the model takes it, the file's own size, and what was done to it, in words."""
    if path.is_dir():
        why = "a symbolic link to a folder, not followed (give its target)" if path.is_symlink() else "cannot be listed"
        raise ReffAKDError(f"folder {path} was skipped: {why}")
    if path.is_symlink() and not path.exists():
        raise ReffAKDError(f"unreadable image {path}: a broken symbolic link (to {os.readlink(path)})")
    if not path.is_file():
        raise ReffAKDError(f"unreadable image {path}: no such file")
    (h, w), gray = probe_image(path)
    pixels = read_image_as_trained(path, channels, size, dataset)
    steps = []
    if gray and channels == 3:
        steps.append("grayscale -> RGB")
    elif not gray and channels == 1:
        steps.append("RGB -> grayscale")
    if (h, w) != tuple(size):
        steps.append(f"resized {h}x{w} -> {size[0]}x{size[1]} (bilinear)")
    return pixels, (h, w), ", ".join(steps) or "as is"


def predict_images(
    model: DeployedModel, inputs: Sequence[str | os.PathLike[str]], top_k: int = 3, batch_size: int = 256,
    on_error: Callable[[str], None] | None = None,
) -> list[Prediction]:  # fmt: skip
    """Every image's top-k; an unreadable one gets its error (also passed to ``on_error``) and the rest go on."""
    if not 1 <= top_k <= MAX_CLASSES:  # more than the model's classes lists them all; 10^30 filled the CSV's header
        raise ReffAKDError(
            f"top_k {top_k} is out of range: it must be between 1 and {MAX_CLASSES:,}", params=("top_k",)
        )
    k = min(top_k, len(model.class_names))
    results = [Prediction(str(p)) for p in image_files(inputs)]
    ready: list[tuple[Prediction, torch.Tensor]] = []

    def flush() -> None:
        probs = check_probabilities(model, model.probabilities(torch.stack([x for _, x in ready])), ready[0][0].file)
        for (pred, _), row in zip(ready, probs):
            order = np.argsort(-row, kind="stable")[:k]
            pred.top = [(model.class_names[i], float(row[i])) for i in order]
        ready.clear()

    for pred in results:
        try:
            pixels, pred.size, pred.preprocessing = read_image(
                Path(pred.file), model.channels, model.size, model.dataset
            )
        except ReffAKDError as exc:
            pred.error = str(exc)
            if on_error is not None:
                on_error(pred.error)
            continue
        ready.append((pred, pixels))
        if len(ready) == batch_size:
            flush()
    if ready:
        flush()
    return results


def check_probabilities(model: DeployedModel, probs: np.ndarray, first: str) -> np.ndarray:
    """Every row a distribution (finite, >= 0, summing to 1), or one line: whatever a model file holds, predict never
    prints NaN or negative "probabilities" and exits 0."""
    rows = np.asarray(probs, dtype=np.float64)
    if not (np.isfinite(rows).all() and (rows >= 0).all() and np.allclose(rows.sum(1), 1.0, atol=1e-3)):
        raise ReffAKDError(
            f"{model.source} gave outputs that are not probabilities (NaN, infinite, negative or not summing to 1) "
            f"for the batch from {first}: the model file or its metadata is damaged"
        )
    return rows


def format_prediction(pred: Prediction) -> str:
    top = ", ".join(f"{name} {p:.3f}" for name, p in pred.top)
    return f"{pred.file}: {top} [{pred.preprocessing}]"


def write_csv(path: str | os.PathLike[str], predictions: Sequence[Prediction], top_k: int) -> None:
    """One row per image (an unreadable one with its error), written atomically to a new file (never replacing one
    that appeared meanwhile)."""
    k = max([len(p.top) for p in predictions] + [0]) or top_k
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ranks = [c for r in range(1, k + 1) for c in (f"class_{r}", f"probability_{r}")]
    writer.writerow(["file", "height", "width", "preprocessing", *ranks, "error"])
    for p in predictions:
        cells: list[Any] = [c for name, prob in p.top for c in (name, f"{prob:.6f}")]
        cells += [""] * (2 * k - len(cells))
        h, w = p.size if p.size else ("", "")
        writer.writerow([p.file, h, w, p.preprocessing, *cells, p.error or ""])
    write_text_new(path, buffer.getvalue(), "csv")
