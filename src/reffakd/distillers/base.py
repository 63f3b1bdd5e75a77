"""Distillers: one class per method, mdistiller-style.

A distiller wraps the student and returns ``(logits, {name: weighted loss})``; the training engine
sums the dict, logs every entry, and never knows which method it runs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError


class Distiller(nn.Module):
    """Base: plain cross-entropy on the student; subclasses add their soft-target terms."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, {"ce": F.cross_entropy(logits, targets)}

    def describe(self) -> dict[str, Any]:
        return {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images)


DistillerBuilder = Callable[..., Distiller]
DISTILLERS: dict[str, DistillerBuilder] = {}


def register_distiller(name: str) -> Callable[[DistillerBuilder], DistillerBuilder]:
    def wrap(builder: DistillerBuilder) -> DistillerBuilder:
        DISTILLERS[name] = builder
        return builder

    return wrap


def build_distiller(method: str, student: nn.Module, **kwargs: Any) -> Distiller:
    if method not in DISTILLERS:
        raise ReffAKDError(f"unknown method {method!r}; available: {', '.join(sorted(DISTILLERS))}")
    return DISTILLERS[method](student, **kwargs)
