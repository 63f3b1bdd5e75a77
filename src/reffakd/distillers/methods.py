"""The methods of this release: ``ce`` (no KD) and ``reffakd`` (autoencoder soft labels)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..errors import ReffAKDError
from ..losses import ReffAKDLoss
from ..softlabels.artifact import SoftLabels
from .base import Distiller, register_distiller


class CrossEntropy(Distiller):
    """The no-KD baseline."""


class ReffAKD(Distiller):
    """Student against the fixed soft label of its true class: a table lookup, no teacher pass."""

    def __init__(self, student: nn.Module, soft_labels: SoftLabels, alpha: float, temperature: float) -> None:
        super().__init__(student)
        self.criterion = ReffAKDLoss(soft_labels, alpha=alpha, temperature=temperature)

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, self.criterion.components(logits, targets)

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.criterion.alpha, "temperature": self.criterion.temperature}


@register_distiller("ce")
def _ce(student: nn.Module, **_: Any) -> Distiller:
    return CrossEntropy(student)


@register_distiller("reffakd")
def _reffakd(student: nn.Module, *, soft_labels: SoftLabels | None = None, alpha: float = 0.5, temperature: float = 4.0, **_: Any) -> Distiller:
    if soft_labels is None:
        raise ReffAKDError("method reffakd needs soft labels: pass --soft-labels PATH (made by `reffakd softlabels`)")
    return ReffAKD(student, soft_labels, alpha, temperature)
