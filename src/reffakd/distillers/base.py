"""Distillers: one class per method, mdistiller-style, and the registry of methods.

A distiller wraps the student and returns ``(logits, {name: weighted loss})``; the training engine
sums the dict, logs every entry, and never knows which method it runs. A distiller that learns
from soft targets holds a ``source`` (``reffakd.sources``) and never cares which kind it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError

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


# What a method needs besides the student: nothing, an autoencoder soft-label artifact, or a teacher network.
NEEDS = (None, "soft_labels", "teacher")
DistillerBuilder = Callable[..., Distiller]


@dataclass(frozen=True)
class Method:
    name: str
    builder: DistillerBuilder
    needs: str | None
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    check: Callable[[dict[str, Any]], None] | None = None  # raises ReffAKDError on a bad value


DISTILLERS: dict[str, Method] = {}


def register_distiller(
    name: str,
    *,
    needs: str | None = None,
    defaults: dict[str, Any] | None = None,
    summary: str = "",
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[DistillerBuilder], DistillerBuilder]:
    """Register ``builder(student, *, num_classes, total_epochs, soft_labels | teacher, **params)`` under ``name``."""
    assert needs in NEEDS

    def wrap(builder: DistillerBuilder) -> DistillerBuilder:
        DISTILLERS[name] = Method(name, builder, needs, dict(defaults or {}), summary, check)
        return builder

    return wrap


def get_method(name: str) -> Method:
    if name not in DISTILLERS:
        raise ReffAKDError(f"unknown method {name!r}; available: {', '.join(sorted(DISTILLERS))}")
    return DISTILLERS[name]


def method_params(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's defaults updated with ``overrides`` (``None`` values mean "use the default").

    A parameter the method does not take is refused, so a typo never silently does nothing.
    """
    spec = get_method(method)
    params = dict(spec.defaults)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in spec.defaults:
            allowed = ", ".join(sorted(spec.defaults)) or "none"
            raise ReffAKDError(f"method {method} takes no parameter {key!r}; its parameters: {allowed}")
        params[key] = value
    if spec.check is not None:
        spec.check(params)
    return params


def build_distiller(
    method: str,
    student: nn.Module,
    *,
    num_classes: int,
    params: dict[str, Any] | None = None,
    total_epochs: int = 1,
    **inputs: Any,
) -> Distiller:
    """Build ``method`` around ``student``; ``inputs`` carries ``soft_labels`` or ``teacher`` as the method needs."""
    spec = get_method(method)
    if spec.needs is not None and inputs.get(spec.needs) is None:
        what = {
            "soft_labels": "soft labels (--soft-labels PATH, made by `reffakd softlabels`)",
            "teacher": "a teacher (--teacher PATH, a checkpoint made by `reffakd train`)",
        }[spec.needs]
        raise ReffAKDError(f"method {method} needs {what}")
    return spec.builder(
        student, num_classes=num_classes, total_epochs=total_epochs, **inputs, **method_params(method, params)
    )
