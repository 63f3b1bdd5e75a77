"""timm architectures as reffakd models: ``timm/NAME`` builds ``timm.create_model(NAME)`` for the data.

Never pretrained: weights from a hub would be a teacher (or student) trained on other data, which is
what the comparisons of this project must not hide, and downloading would need the network. The
input channels, the class count and, for the architectures that take it (ViTs and the like), the image
size are passed through; the convolutional ones pool globally and take any size that survives their
strides. The optional extra ``reffakd[timm]`` installs timm.
"""

from __future__ import annotations

import difflib

import torch.nn as nn

from ..errors import ReffAKDError, require_extra

TIMM_PREFIX = "timm/"


class UnknownModelError(ReffAKDError):
    """A model name that names nothing: a size or another input would not help, so it is reported as it is."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def create_timm_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """``timm/NAME`` at its initial weights; one line for a name timm does not know or an input it cannot take."""
    arch = name[len(TIMM_PREFIX) :]
    require_extra("timm", ("timm",), f"model {name}")
    import timm

    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = (
            f"did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else "timm.list_models() lists them"
        )
        raise UnknownModelError(f"unknown model {name!r}: timm has no architecture {arch!r}; {hint}", params=("model",))
    kwargs = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels}
    size = f"{in_channels}x{image_size[0]}x{image_size[1]}"
    try:
        try:
            return timm.create_model(arch, img_size=tuple(image_size), **kwargs)
        except TypeError as exc:  # an architecture without an image size (convolutional, globally pooled)
            if "img_size" not in str(exc):
                raise
            return timm.create_model(arch, **kwargs)
    except Exception as exc:  # timm raises assertions, TypeErrors, ValueErrors... for inputs it cannot take
        raise ReffAKDError(
            f"model {name} cannot be built for {size} inputs and {num_classes} classes: {_first_line(exc)}"
        ) from None
