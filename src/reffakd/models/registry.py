"""Model registry: every architecture is built from (num_classes, in_channels, image_size).

Issues that add the CIFAR zoo or ResNets register their builders here; the CLI and checkpoints
refer to models by these names only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ..errors import ReffAKDError

ModelBuilder = Callable[..., nn.Module]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def wrap(builder: ModelBuilder) -> ModelBuilder:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = builder
        return builder

    return wrap


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """Build a registered classifier; a clear error for an unknown name or an input it cannot take."""
    if name not in MODELS:
        raise ReffAKDError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def available_models() -> list[str]:
    return sorted(MODELS)
