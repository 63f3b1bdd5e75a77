"""Model checkpoints: weights in safetensors, everything needed to rebuild the model in JSON beside them.

Nothing is unpickled: a checkpoint from an untrusted source can at worst fail to load.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from ..errors import ReffAKDError
from ..io import read_json, read_safetensors, sidecar_json, write_json, write_with
from .registry import MODELS, create_model
from .timm_models import TIMM_PREFIX

# Bounds on what a checkpoint may ask to build: an edited image_size of [60000, 60000] would exhaust the memory.
MAX_IMAGE_SIDE, MAX_CLASSES, MAX_CHANNELS = 1024, 100_000, 4
# The normalisation is pixel statistics on the [0, 1] scale (``channel_stats``, std rounded to 6 decimals): an edited
# std of 0, NaN or 1e-45 made every output NaN or infinite, and predict printed NaN "probabilities" with exit 0.
MIN_STD = 1e-6
REQUIRED_KEYS = ("model", "num_classes", "in_channels", "image_size", "class_names", "mean", "std")


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_with(path, lambda tmp: save_file(state, str(tmp)))
    write_json(sidecar_json(path), meta)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata) or one clear error naming what is wrong with the file."""
    path = Path(path)
    state = read_safetensors(path, "checkpoint", "`reffakd train`")
    mp = sidecar_json(path)
    if not mp.is_file():
        raise ReffAKDError(
            f"checkpoint {path} has no {mp.name} beside it, so it is not a reffakd checkpoint: reffakd loads the "
            "weights and the metadata that `reffakd train` writes together"
        )
    meta = read_json(mp, "checkpoint metadata", "`reffakd train` beside the weights")
    missing = [k for k in REQUIRED_KEYS if k not in meta] if isinstance(meta, dict) else list(REQUIRED_KEYS)
    if missing:
        raise ReffAKDError(f"checkpoint metadata {mp} lacks {', '.join(missing)}")
    _check_meta_types(meta, mp)
    return state, meta


def _check_meta_types(meta: dict[str, Any], where: Path) -> None:
    """Shapes of the metadata the model is rebuilt from, so a hand-edited file fails here and not later."""

    def ints(value: Any, n: int, high: int) -> bool:
        return isinstance(value, list) and len(value) == n and all(isinstance(v, int) and 0 < v <= high for v in value)

    ok = (
        isinstance(meta["model"], str)
        and isinstance(meta["num_classes"], int)
        and meta["num_classes"] > 0
        and isinstance(meta["in_channels"], int)
        and meta["in_channels"] > 0
        and ints(meta["image_size"], 2, MAX_IMAGE_SIDE)
        and meta["num_classes"] <= MAX_CLASSES
        and meta["in_channels"] <= MAX_CHANNELS
        and isinstance(meta["class_names"], list)
        and len(meta["class_names"]) == meta["num_classes"]
        and all(isinstance(n, str) for n in meta["class_names"])
        and all(
            isinstance(meta[k], list)
            and len(meta[k]) == meta["in_channels"]
            and all(isinstance(v, (int, float)) for v in meta[k])
            for k in ("mean", "std")
        )
    )
    if not ok:
        raise ReffAKDError(
            f"checkpoint metadata {where} is malformed: expected model (name), "
            f"num_classes and in_channels (positive ints, at most {MAX_CLASSES} and {MAX_CHANNELS}), image_size [H, W] "
            f"(each at most {MAX_IMAGE_SIDE}), class_names (num_classes strings), "
            "mean and std (in_channels numbers each)"
        )
    _check_normalisation(meta, where)


def _check_normalisation(meta: dict[str, Any], where: Path) -> None:
    """mean in [0, 1] and std in [MIN_STD, 1], finite numbers (not booleans): what ``channel_stats`` can give."""
    for key, low in (("mean", 0.0), ("std", MIN_STD)):
        values = meta[key]
        if not all(not isinstance(v, bool) and low <= v <= 1.0 and math.isfinite(v) for v in values):
            raise ReffAKDError(
                f"checkpoint metadata {where} has {key} {values}: each must be a finite number in [{low:g}, 1] "
                "(pixel statistics on the [0, 1] scale, as `reffakd train` writes them)"
            )


def check_state(state: dict[str, torch.Tensor], module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Each stored tensor has the dtype the module holds and, when floating, finite values: a dtype edited in the
    safetensors header (I32 for F32, same size) loaded as integers cast to floats, and NaN weights gave NaN."""
    expected = module.state_dict()
    for key, tensor in state.items():
        want = expected.get(key)
        if want is not None and tensor.dtype != want.dtype:
            raise ReffAKDError(
                f"checkpoint {path} stores {key} as {tensor.dtype}, but the model holds {want.dtype}: the file was "
                "edited or not written by reffakd"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ReffAKDError(f"checkpoint {path} has non-finite values (NaN or infinite) in {key}")


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the registered architecture named in the metadata and load the weights into it."""
    state, meta = load_checkpoint(path)
    return build_model(state, meta, path), meta


def build_model(state: dict[str, torch.Tensor], meta: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    """The architecture a loaded checkpoint's metadata names, with its weights (``path``: for the messages)."""
    name = meta["model"]
    if name not in MODELS and not name.startswith(TIMM_PREFIX):
        raise ReffAKDError(
            f"checkpoint {path} holds model {name!r}, which is not registered here: register its builder with "
            f"reffakd.models.register_model({name!r}) before loading it (docs/MODELS.md)"
        )
    model = create_model(
        meta["model"],
        num_classes=int(meta["num_classes"]),
        in_channels=int(meta["in_channels"]),
        image_size=tuple(meta["image_size"]),
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())[:300]
        raise ReffAKDError(f"checkpoint {path} does not fit model {meta['model']!r}: {detail}") from None
    check_state(state, model, path)
    return model


def check_fits(meta: dict[str, Any], class_names: Sequence[str], shape: Sequence[int], what: str, dataset: str) -> None:
    """Refuse a checkpoint trained on other classes or another input shape than the data's, in one line each.

    ``shape``: the data's (channels, height, width); ``what``: how the message names the checkpoint.
    """
    if list(meta["class_names"]) != list(class_names):
        raise ReffAKDError(
            f"{what} was trained on classes {meta['class_names'][:4]}... ({meta['num_classes']}), not on "
            f"{dataset}'s {list(class_names)[:4]}... ({len(class_names)}); use one trained on this dataset"
        )
    if [meta["in_channels"], *meta["image_size"]] != list(shape):
        c, h, w = meta["in_channels"], *meta["image_size"]
        raise ReffAKDError(f"{what} expects {c}x{h}x{w} inputs, the dataset gives {shape[0]}x{shape[1]}x{shape[2]}")


def check_split(meta: dict[str, Any], identity: dict[str, Any], what: str) -> None:
    """Refuse scoring a checkpoint on a validation set other than the one it was selected on: with another split
    seed or size, that "val" holds images it trained on. ``identity``: the data's (``DataSplits.identity``)."""
    saved = meta.get("data")
    if not isinstance(saved, dict):
        raise ReffAKDError(
            f"{what} does not record the split it was selected on (written by an older reffakd), so its validation "
            "set cannot be rebuilt safely; evaluate split test instead",
            params=("split",),
        )
    names = {"split_seed": "split_seed", "val_size": "val_size"}
    for key in ("dataset", "split_seed", "val_size", "train_images", "test_images", "fingerprint"):
        if saved.get(key) != identity.get(key):
            hint = f"give {names[key]} {saved.get(key)}" if key in names else "use the data it was trained on"
            raise ReffAKDError(
                f"{what} was selected on another validation split ({key} {saved.get(key)!r}, here "
                f"{identity.get(key)!r}): that val set would hold images it trained on; {hint}",
                params=tuple(names.values()),
            )
