"""Labelled budgets: only some training images keep their labels; the rest are unlabelled.

Soft targets are said to pay off where the student can overfit, and few labels is the commonest such
case. A budget keeps the labels of a stratified, seeded subset of the training split (after the
validation split has been carved, so validation and test never change with the budget). The other
training images stay available as *unlabelled* images, with label -1, so nothing that needs a label
can use them by mistake: only the autoencoder (semi-supervised soft labels) reads them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ReffAKDError

UNLABELLED = -1  # the label of an image whose label the budget withholds


@dataclass(frozen=True)
class LabelBudget:
    """``per_class`` labelled images of each class, or a ``fraction`` of each class's; ``seed`` picks which."""

    per_class: int | None = None
    fraction: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.fraction is None):
            raise ReffAKDError(
                "a labelled budget takes exactly one of labels_per_class and label_fraction",
                params=("labels_per_class", "label_fraction"),
            )
        if self.per_class is not None and self.per_class < 1:
            raise ReffAKDError(
                f"labels_per_class {self.per_class} is out of range: at least 1", params=("labels_per_class",)
            )
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ReffAKDError(f"label_fraction {self.fraction} is out of range: in (0, 1]", params=("label_fraction",))

    def counts(self, class_sizes: list[int], class_names: tuple[str, ...]) -> list[int]:
        """How many images of each class keep their label (a fraction rounds, keeping at least one)."""
        if self.fraction is not None:
            return [max(1, round(self.fraction * n)) if n else 0 for n in class_sizes]
        assert self.per_class is not None
        smallest = min(range(len(class_sizes)), key=lambda c: class_sizes[c])
        if self.per_class > class_sizes[smallest]:
            raise ReffAKDError(
                f"labels_per_class {self.per_class} is out of range: class {class_names[smallest]!r} has "
                f"{class_sizes[smallest]} training images after the validation split (at most that many)",
                params=("labels_per_class",),
            )
        return [self.per_class] * len(class_sizes)


def labelled_subset(
    labels: torch.Tensor, budget: LabelBudget, class_names: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (sorted) into ``labels`` of the labelled images and of the others.

    Stratified: each class keeps its ``budget.counts`` images, drawn by one seeded permutation of the
    whole split (so a larger budget with the same seed contains the smaller one's images).
    """
    generator = torch.Generator().manual_seed(budget.seed)
    order = torch.randperm(int(labels.shape[0]), generator=generator)
    sizes = torch.bincount(labels, minlength=len(class_names)).tolist()
    keep = budget.counts(sizes, class_names)
    shuffled = labels[order]
    chosen = []
    for c, k in enumerate(keep):
        chosen.append(order[shuffled == c][:k])
    labelled = torch.cat(chosen).sort().values
    mask = torch.ones(labels.shape[0], dtype=torch.bool)
    mask[labelled] = False
    return labelled, mask.nonzero().flatten()


def budget_record(budget: LabelBudget, labelled: torch.Tensor, total: int) -> dict[str, Any]:
    """What identifies the labelled subset: the budget, its seed, its size and a hash of its indices.

    It goes into run checkpoints (a resume with another subset is refused) and into the soft-label
    artifact's metadata (soft labels made on another subset are refused).
    """
    digest = hashlib.sha256(labelled.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    n = int(labelled.numel())
    amount = (
        {"labels_per_class": budget.per_class} if budget.per_class is not None else {"label_fraction": budget.fraction}
    )
    record: dict[str, Any] = {**amount, "seed": budget.seed, "labelled": n, "unlabelled": total - n}
    record["indices_sha256"] = digest
    return record


def describe_budget(record: dict[str, Any] | None) -> str:
    """One phrase for logs and errors: ``100 labels per class (seed 0)``, or ``all labels``."""
    if record is None:
        return "all labels"
    amount = (
        f"{record['labels_per_class']} labels per class"
        if "labels_per_class" in record
        else f"{record['label_fraction']:g} of each class's labels"
    )
    return f"{amount} (seed {record['seed']})"
