"""Class tables with their mass and structure set apart: the placebo-controlled arms of the structure study.

Two families, each in three structures (``softlabels.structure``): the autoencoder's class table (AESL), and a
trained network's class table, the mean of its softmax over the labelled training images of each class (the
teacher's class structure as a table lookup: an upper reference for what any class-level table can teach). Each
keeps the knobs ``own_mass`` and ``off_temperature`` of ``restructure`` apart from its structure, so that
``similarity``, ``shuffled`` and ``uniform`` can be compared at exactly the same mass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from ..data import make_batches
from ..errors import ReffAKDError
from ..resources import combine_stages
from ..softlabels.structure import restructure
from .base import ClassTable, TeacherNetwork

if TYPE_CHECKING:
    from ..data import DataSplits
    from ..softlabels import SoftLabels

TABLE_BATCH_SIZE = 1024


def structured_soft_label_table(
    soft_labels: SoftLabels, structure: str, own_mass: float | None, off_temperature: float | None, seed: int = 0
) -> ClassTable:
    """AESL's class table with its own-class mass, off-diagonal temperature (over the class similarities) and
    structure set; made from similarity-structured soft labels only, so that a placebo is never applied twice."""
    soft_labels.check_structure(f"aesl-{structure}", restructures=True)
    if off_temperature is not None and soft_labels.similarity is None:
        raise ReffAKDError(
            "these soft labels carry no similarity matrix, which off_temperature needs; rebuild them with "
            "`reffakd softlabels`", params=("soft_labels",),
        )  # fmt: skip
    table = restructure(
        soft_labels.matrix.to(torch.float64), own=own_mass, scores=soft_labels.similarity,
        off_temperature=off_temperature, structure=structure, seed=seed,
    )  # fmt: skip
    shape = {"structure": structure, "own_mass": own_mass, "off_temperature": off_temperature, "structure_seed": seed}
    return ClassTable(
        table, name=f"aesl-{structure}", made_by={"soft_labels": soft_labels.metadata.get("config")},
        made_cost=soft_labels.cost, shape=shape, float64_out=False,
    )  # fmt: skip


@torch.no_grad()
def network_class_table(teacher: TeacherNetwork, splits: DataSplits) -> tuple[torch.Tensor, dict[str, Any]]:
    """The (C, C) float64 table whose row c is the mean of softmax(teacher(x)) over the labelled training images of
    class c (un-augmented), and the cost of that pass in the ledger's stage shape.

    Every image of a class counts once; a class without a labelled image cannot have a row and is refused.
    """
    device = next(iter(teacher.model.parameters()), torch.empty(0)).device
    c = splits.num_classes
    sums = torch.zeros(c, c, dtype=torch.float64, device=device)
    counts = torch.zeros(c, dtype=torch.float64, device=device)
    began = time.perf_counter()
    batches = make_batches(splits.train, TABLE_BATCH_SIZE, normalize=(splits.mean, splits.std), device=device)
    for images, labels, *_ in batches:
        probs = torch.softmax(teacher.logits(images).to(torch.float64), dim=1)
        sums.index_add_(0, labels.long(), probs)
        counts.index_add_(0, labels.long(), torch.ones_like(labels, dtype=torch.float64))
    if bool((counts == 0).any()):
        empty = splits.class_names[int((counts == 0).nonzero()[0])]
        raise ReffAKDError(f"class {empty!r} has no labelled training image, so a network's class table has no row")
    n = int(counts.sum())
    stage = {
        "name": "teacher_class_table", "seconds": time.perf_counter() - began,
        "flops": teacher.forward_flops_per_image * n, "peak_memory_bytes": None, "details": {"images": n},
    }  # fmt: skip
    return (sums / counts.unsqueeze(1)).cpu(), stage


def structured_teacher_table(
    teacher: TeacherNetwork,
    splits: DataSplits,
    structure: str,
    own_mass: float | None,
    off_temperature: float | None,
    seed: int = 0,
) -> ClassTable:
    """A trained network's class table (``network_class_table``) with its mass and structure set; the scores of
    its off-diagonal temperature are the table's log-probabilities. Its cost: the network's training and the one
    pass over the labelled images; during training it is a lookup. Kept in float64, it gives float32 targets to
    float32 runs and float64 ones to float64 runs."""
    table, stage = network_class_table(teacher, splits)
    scores = table.clamp_min(torch.finfo(torch.float64).tiny).log()
    shaped = restructure(
        table, own=own_mass, scores=scores, off_temperature=off_temperature, structure=structure, seed=seed
    )
    stages = dict(teacher.cost(0)["stages"])  # the teacher's training; no forward passes while the student trains
    stages.pop("teacher_forward", None)
    stages["teacher_class_table"] = stage
    info = teacher.info
    cost = combine_stages(
        stages, source=f"teacher-table-{structure}", teacher=info.to_dict() if info is not None else None,
        teacher_training_cost_known=info is not None and info.training_cost is not None,
    )  # fmt: skip
    shape = {"structure": structure, "own_mass": own_mass, "off_temperature": off_temperature, "structure_seed": seed}
    return ClassTable(
        shaped, name=f"teacher-table-{structure}", made_by={"teacher": info.path if info is not None else teacher.name},
        made_cost=cost, shape=shape, float64_out=False,
    )  # fmt: skip
