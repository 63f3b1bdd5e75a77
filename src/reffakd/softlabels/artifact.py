"""``SoftLabels``: the soft-label matrix as a cacheable artifact (safetensors + JSON beside it).

Only safe formats are read: the matrix from safetensors, the metadata from JSON. Loading checks
everything a loss relies on, so a bad file fails at load time with one clear line, not mid-training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..errors import ReffAKDError
from ..io import read_json, read_safetensors, sidecar_json, write_json, write_with

ROW_SUM_TOLERANCE = 1e-4


@dataclass
class SoftLabels:
    """A row-stochastic (C, C) matrix: row c is the target distribution for images of class c."""

    matrix: torch.Tensor
    class_names: tuple[str, ...]
    similarity: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] | None = None  # what making them cost (``soft_labels_cost.json`` beside the file)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.matrix = self.matrix.to(torch.float32)
        validate_matrix(self.matrix, len(self.class_names), "soft-label matrix")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_matches(self, class_names: Sequence[str], where: str = "the dataset") -> None:
        """Refuse soft labels built for other classes than the ones being trained on."""
        if tuple(class_names) != self.class_names:
            if len(class_names) != self.num_classes:
                raise ReffAKDError(
                    f"soft labels have {self.num_classes} classes but {where} has {len(class_names)}; "
                    "rebuild them with `reffakd softlabels` on this dataset"
                )
            raise ReffAKDError(
                f"soft labels' class names {list(self.class_names)[:4]}... differ from {where}'s "
                f"{list(class_names)[:4]}...; rebuild them on this dataset"
            )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (.safetensors) and the metadata as JSON beside it, each atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ReffAKDError(f"soft-label file {path} must end in .safetensors")
        tensors = {"soft_labels": self.matrix.contiguous().cpu()}
        if self.similarity is not None:
            tensors["similarity"] = self.similarity.to(torch.float64).contiguous().cpu()
        write_with(path, lambda tmp: save_file(tensors, str(tmp)))
        write_json(
            sidecar_json(path),
            {"format": "reffakd-soft-labels/1", "class_names": list(self.class_names), "metadata": self.metadata},
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SoftLabels:
        path = Path(path)
        meta_path = sidecar_json(path)
        tensors = read_safetensors(path, "soft-label file", "`reffakd softlabels`")
        meta = read_json(meta_path, "soft-label metadata", "`reffakd softlabels` beside the .safetensors file")
        try:
            if not isinstance(meta, dict):
                raise TypeError("not a JSON object")
            class_names = meta["class_names"]
            if not isinstance(class_names, list) or not all(isinstance(n, str) for n in class_names):
                raise TypeError("class_names must be a list of strings")
            if not isinstance(meta.get("metadata", {}), dict):
                raise TypeError("metadata must be an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise ReffAKDError(
                f"soft-label metadata {meta_path} is malformed ({exc}); expected JSON with a class_names list"
            ) from None
        if "soft_labels" not in tensors:
            raise ReffAKDError(
                f"soft-label file {path} has no 'soft_labels' tensor (found: {', '.join(tensors) or 'none'})"
            )
        cost = read_soft_label_cost(path)
        return cls(
            tensors["soft_labels"], tuple(class_names), tensors.get("similarity"), meta.get("metadata", {}), cost
        )


COST_FILE = "soft_labels_cost.json"


def read_soft_label_cost(soft_labels_path: Path) -> dict[str, Any] | None:
    """``soft_labels_cost.json`` beside the soft labels (written by `reffakd softlabels`), or None."""
    cost_path = soft_labels_path.with_name(COST_FILE)
    if not cost_path.is_file():
        return None
    cost = read_json(cost_path, "soft-label cost file", "`reffakd softlabels`")
    if not isinstance(cost, dict):
        raise ReffAKDError(
            f"soft-label cost file {cost_path} is malformed: expected a JSON object of cost stages, got "
            f"{type(cost).__name__}; it is written by `reffakd softlabels`"
        )
    return cost


def validate_matrix(matrix: torch.Tensor, num_classes: int, what: str) -> None:
    """Square, matching the class count, finite, non-negative, rows summing to 1."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ReffAKDError(f"{what} must be square (C, C), got shape {tuple(matrix.shape)}")
    if matrix.shape[0] != num_classes:
        raise ReffAKDError(f"{what} is {matrix.shape[0]}x{matrix.shape[0]} but there are {num_classes} class names")
    if not torch.isfinite(matrix).all():
        raise ReffAKDError(f"{what} contains NaN or infinite values; every entry must be a finite probability")
    if (matrix < 0).any():
        raise ReffAKDError(f"{what} has negative entries (min {float(matrix.min()):.3g}); probabilities must be >= 0")
    worst = float((matrix.to(torch.float64).sum(1) - 1).abs().max())
    if worst > ROW_SUM_TOLERANCE:
        raise ReffAKDError(f"{what} rows must sum to 1 (within {ROW_SUM_TOLERANCE}); worst row is off by {worst:.3g}")
