"""Distillers: one class per method, mdistiller-style (the registry of methods is ``registry``).

A distiller wraps the student and returns ``(logits, {name: weighted loss})``; the training engine
sums the dict, logs every entry, and never knows which method it runs. A distiller that learns
from soft targets holds a ``source`` (``reffakd.sources``) and never cares which kind it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..sources import SoftTargetSource


class Distiller(nn.Module):
    """Base: plain cross-entropy on the student; subclasses add their soft-target terms."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.source: SoftTargetSource | None = None  # where the soft targets come from, if any

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``epoch``: training progress in epochs at the end of this step (epoch e's step s of S: e - 1 + (s + 1) / S)."""
        logits = self.student(images)
        return logits, {"ce": F.cross_entropy(logits, targets)}

    def describe(self) -> dict[str, Any]:
        return {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images)
