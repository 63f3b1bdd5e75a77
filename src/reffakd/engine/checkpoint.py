"""Model checkpoints: weights in safetensors, everything needed to rebuild the model in JSON beside them.

Nothing is unpickled: a checkpoint from an untrusted source can at worst fail to load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ReffAKDError
from ..io import write_json, write_with

REQUIRED_KEYS = ("model", "num_classes", "in_channels", "image_size", "class_names", "mean", "std")


def meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_with(path, lambda tmp: save_file(state, str(tmp)))
    write_json(meta_path(path), meta)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata) or one clear error naming what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ReffAKDError(f"checkpoint {path} does not exist; expected a .safetensors file written by `reffakd train`")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ReffAKDError(f"checkpoint {path} is unreadable ({exc}); expected a safetensors file written by `reffakd train`") from None
    mp = meta_path(path)
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReffAKDError(f"checkpoint metadata {mp} is missing or malformed ({exc}); it is written beside the weights") from None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ReffAKDError(f"checkpoint metadata {mp} lacks {', '.join(missing)}")
    return state, meta


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the registered architecture named in the metadata and load the weights into it."""
    from ..models import create_model

    state, meta = load_checkpoint(path)
    model = create_model(meta["model"], num_classes=int(meta["num_classes"]), in_channels=int(meta["in_channels"]), image_size=tuple(meta["image_size"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ReffAKDError(f"checkpoint {path} does not fit model {meta['model']!r}: {first}") from None
    return model, meta
