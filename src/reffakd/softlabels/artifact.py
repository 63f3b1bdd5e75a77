"""``SoftLabels``: the soft-label matrix as a cacheable artifact (safetensors + JSON beside it).

Only safe formats are read: the matrix from safetensors, the metadata from JSON. Loading checks
everything a loss relies on, so a bad file fails at load time with one clear line, not mid-training.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..data.budget import describe_budget
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
    # Per-image soft labels (``reffakd-instance``): row k is the target of training image ``instance_index[k]``
    # of the split whose content hash is ``metadata["instance_split"]``; None when not built.
    instance: torch.Tensor | None = None
    instance_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.matrix = self.matrix.to(torch.float32)
        validate_matrix(self.matrix, len(self.class_names), "soft-label matrix")
        if self.instance is not None:
            self.instance = self.instance.to(torch.float32)
            index = self.instance_index
            if index is None or index.ndim != 1 or index.shape[0] != self.instance.shape[0]:
                raise ReffAKDError("a per-image soft-label table needs one image index per row (instance_index)")
            if not isinstance(self.metadata.get("instance_split"), str):
                raise ReffAKDError("a per-image soft-label table needs the content hash of its split (instance_split)")
            validate_rows(self.instance, len(self.class_names), "per-image soft-label table")

    def instance_table(self, split_fingerprint: str | None, num_samples: int) -> torch.Tensor:
        """The (N, C) per-image table in split order; one line when absent or made on other images."""
        if self.instance is None or self.instance_index is None:
            raise ReffAKDError(
                "these soft labels have no per-image table; rebuild them with this version of `reffakd softlabels`"
            )
        made = self.metadata["instance_split"]
        if split_fingerprint is not None and split_fingerprint != made:
            raise ReffAKDError(
                f"the per-image soft labels were made on another training split (content hash {made[:12]}, this "
                f"split {split_fingerprint[:12]}); rebuild them with `reffakd softlabels` on this split"
            )
        index = self.instance_index.long()
        if index.numel() != num_samples or not torch.equal(torch.sort(index).values, torch.arange(num_samples)):
            raise ReffAKDError(
                f"the per-image soft labels cover {index.numel()} images, this training split has {num_samples}; "
                "rebuild them with `reffakd softlabels` on this split"
            )
        table = torch.empty_like(self.instance)
        table[index] = self.instance
        return table

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

    def check_labelled(self, budget: dict[str, Any] | None) -> None:
        """Refuse soft labels whose class similarity saw other labelled images than this run's budget keeps.

        Soft labels computed on all labels would leak the labels a budget withholds; ones computed on
        another subset are another method's inputs. Artifacts without the record predate budgets: all labels.
        """
        made_on = self.metadata.get("labelled")
        if made_on != budget:
            raise ReffAKDError(
                f"soft labels were made with {describe_budget(made_on)} but this run has {describe_budget(budget)}; "
                "rebuild them with `reffakd softlabels` and the same --labels-per-class/--label-fraction/--label-seed"
            )

    @property
    def semi_supervised(self) -> bool:
        """Its autoencoder could train on images beyond the labelled ones (budget_unlabelled, unlabelled_dir)."""
        config = self.metadata.get("config") or {}
        return bool(config.get("budget_unlabelled")) or config.get("unlabelled_dir") is not None

    def check_semi(self, semi: bool, method: str) -> None:
        """A ``-semi`` method trains only on semi-supervised soft labels, and the others only on supervised ones, so
        a method's name always says what its autoencoder saw."""
        if semi != self.semi_supervised:
            made = "with" if self.semi_supervised else "without"
            fix = (
                "--budget-unlabelled or --unlabelled-dir"
                if semi
                else "neither --budget-unlabelled nor --unlabelled-dir"
            )
            raise ReffAKDError(
                f"method {method} {'needs' if semi else 'cannot use'} semi-supervised soft labels, and these were made "
                f"{made} unlabelled images; rebuild them with `reffakd softlabels` and {fix}"
            )

    def fingerprint(self) -> str:
        """A hash of the tables a run trains against (the class table and the per-image one): part of a run's
        identity, so that a run is never resumed against other soft labels."""
        digest = hashlib.sha256(self.matrix.to(torch.float32).contiguous().numpy().tobytes())
        if self.instance is not None:
            digest.update(self.instance.to(torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def check_structure(self, method: str, restructures: bool) -> None:
        """A method that sets the mass and structure of the soft labels itself (``aesl-shuffled``, ...) takes them
        only as computed, so that a placebo is never applied on top of another."""
        made = self.metadata.get("structure", "similarity")
        if restructures and made != "similarity":
            raise ReffAKDError(
                f"these soft labels were made with structure {made!r}, and method {method} needs similarity ones (it "
                "applies its own structure); rebuild them with `reffakd softlabels --structure similarity`",
                params=("soft_labels",),
            )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (.safetensors) and the metadata as JSON beside it, each atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ReffAKDError(f"soft-label file {path} must end in .safetensors")
        tensors = {"soft_labels": self.matrix.contiguous().cpu()}
        if self.similarity is not None:
            tensors["similarity"] = self.similarity.to(torch.float64).contiguous().cpu()
        if self.instance is not None and self.instance_index is not None:
            tensors["instance"] = self.instance.contiguous().cpu()
            tensors["instance_index"] = self.instance_index.to(torch.int64).contiguous().cpu()
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
            tensors["soft_labels"], tuple(class_names), tensors.get("similarity"), meta.get("metadata", {}), cost,
            tensors.get("instance"), tensors.get("instance_index"),
        )  # fmt: skip


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
    validate_rows(matrix, num_classes, what)


def validate_rows(matrix: torch.Tensor, num_classes: int, what: str) -> None:
    """(N, C), finite, non-negative, rows summing to 1."""
    if matrix.ndim != 2 or matrix.shape[1] != num_classes:
        raise ReffAKDError(f"{what} must have {num_classes} columns, got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ReffAKDError(f"{what} contains NaN or infinite values; every entry must be a finite probability")
    if (matrix < 0).any():
        raise ReffAKDError(f"{what} has negative entries (min {float(matrix.min()):.3g}); probabilities must be >= 0")
    worst = float((matrix.to(torch.float64).sum(1) - 1).abs().max())
    if worst > ROW_SUM_TOLERANCE:
        raise ReffAKDError(f"{what} rows must sum to 1 (within {ROW_SUM_TOLERANCE}); worst row is off by {worst:.3g}")
