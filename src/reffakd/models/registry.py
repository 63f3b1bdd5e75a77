"""Model registry: every architecture is built from (num_classes, in_channels, image_size).

The zoo registers its builders here, and so can a user (``register_model``, docs/MODELS.md); the CLI
and checkpoints refer to models by these names only. ``timm/NAME`` names a timm architecture
(``timm_models.py``), built at its initial weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..errors import ReffAKDError
from .timm_models import TIMM_PREFIX, UnknownModelError, create_timm_model

ModelBuilder = Callable[..., nn.Module]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: ``builder(*, num_classes, in_channels, image_size) -> nn.Module`` becomes model ``name``.

    The builder raises ``ReffAKDError`` for an input it cannot take; the model returns (batch, num_classes) logits.
    """
    if name.startswith(TIMM_PREFIX):
        raise ValueError(f"model names starting with {TIMM_PREFIX!r} are timm's; register {name!r} under another name")

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = builder
        return builder

    return wrap


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """A registered classifier (or ``timm/NAME``); one clear error for an unknown name or an input it cannot take."""
    if name.startswith(TIMM_PREFIX):
        model = create_timm_model(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        check_classifier(model, name, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        return model
    if name not in MODELS:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}, or {TIMM_PREFIX}NAME for a timm "
            "architecture",
            params=("model",),
        )
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def check_classifier(
    model: nn.Module, name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int]
) -> None:
    """One batch of two blank images through ``model`` (eval mode, no gradients; free on the meta device): one line
    when it cannot take the input or does not return (batch, num_classes) logits, before anything is trained."""
    c, (h, w) = in_channels, image_size
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, c, h, w, device=device))
    except Exception as exc:  # any layer's shape error
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ReffAKDError(f"model {name} does not fit {c}x{h}x{w} inputs: {first}") from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, num_classes):
        raise ReffAKDError(
            f"model {name} returns {shape} for a batch of 2 images of {c}x{h}x{w}; a classifier must return "
            f"(batch, {num_classes}) logits, one per class"
        )


def available_models() -> list[str]:
    return sorted(MODELS)


def is_model_name(name: object) -> bool:
    """A registered name, or ``timm/NAME`` (whether timm knows NAME is asked when the model is built)."""
    return isinstance(name, str) and (name in MODELS or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)))
