"""A teacher from a checkpoint written by ``reffakd train``: checked against the data, with its cost.

The teacher's own training run is part of what its soft targets cost, so the run's ``summary.json``
beside the checkpoint is read for that cost (FLOPs, wall time, peak memory).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplits
from ..errors import ReffAKDError
from ..io import read_json
from ..models.checkpoint import check_fits, load_model
from ..resources import forward_flops, parameter_count
from .base import TeacherNetwork


@dataclass
class TeacherInfo:
    """What the cost ledger and the run summary record about a teacher."""

    path: str
    model: str
    method: str | None
    parameters: int
    forward_flops_per_image: int
    training_cost: dict[str, Any] | None  # the teacher run's own totals, None when its summary is absent
    val_top1: float | None
    test_top1: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_teacher(path: str | os.PathLike[str], splits: DataSplits, device: torch.device) -> TeacherNetwork:
    """Rebuild the teacher named in the checkpoint's metadata and refuse one trained for other data."""
    path = Path(path)
    model, meta = load_model(path)
    shape = [splits.in_channels, *splits.image_size]
    check_fits(meta, splits.class_names, shape, f"teacher {path}", splits.dataset)
    model = model.to(device)
    fwd = forward_flops(model, tuple(shape))
    summary = _read_summary(path.parent / "summary.json")
    cost = _training_cost(summary, path.parent / "summary.json") if summary else None
    source = TeacherNetwork(
        model,
        splits.num_classes,
        forward_flops_per_image=fwd,
        name=f"teacher:{meta['model']}",
        input_stats=(splits.mean, splits.std),
        teacher_stats=(meta["mean"], meta["std"]),
    ).to(device)
    info = TeacherInfo(
        path=str(path),
        model=meta["model"],
        method=meta.get("method"),
        parameters=parameter_count(model),
        forward_flops_per_image=fwd,
        training_cost=cost,
        val_top1=meta.get("val_top1"),
        test_top1=(summary or {}).get("test_best", {}).get("top1") if summary else None,
    )
    source.info = info
    return source


def teacher_from_module(model: torch.nn.Module, splits: DataSplits, device: torch.device) -> TeacherNetwork:
    """Your own trained ``nn.Module`` as the teacher, taking the data's normalised images (``check_classifier``
    first); its forward FLOPs are counted into the student's ledger, its training cost is unknown to reffakd."""
    from ..models import check_classifier

    shape = (splits.in_channels, *splits.image_size)
    name = type(model).__name__
    check_classifier(model, name, num_classes=splits.num_classes, in_channels=shape[0], image_size=shape[1:])
    model = model.to(device)
    fwd = forward_flops(model, shape)
    return TeacherNetwork(model, splits.num_classes, forward_flops_per_image=fwd, name=f"teacher:{name}").to(device)


def _training_cost(summary: dict[str, Any], where: Path) -> dict[str, Any] | None:
    """The teacher run's cost totals (a mapping; None when the summary has none), or one line naming the file an
    edit broke."""
    cost = summary.get("cost")
    totals = cost.get("totals") if isinstance(cost, dict) else None
    if cost is None or (isinstance(cost, dict) and totals is None):
        return None
    if not isinstance(totals, dict):
        raise ReffAKDError(
            f"teacher run summary {where} is malformed: cost must be an object whose totals is an object, "
            f"got {json.dumps(cost)[:60]}; it is written by `reffakd train`"
        )
    return totals


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = read_json(path, "teacher run summary", "`reffakd train`")
    return data if isinstance(data, dict) else None
