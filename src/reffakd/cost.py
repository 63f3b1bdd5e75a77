"""``reffakd cost``: what the soft targets cost at a recipe's scale, with no training: each model's FLOP count on the
meta device times the recipe's images and epochs, counted as a run's ledger counts them. A teacher costs its own
training plus a forward pass per training image per epoch of every student it teaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .data import DATASET_SIZES
from .data.dataset import default_val_size
from .engine import OptimConfig
from .errors import ReffAKDError
from .models import ConvAutoencoder, create_model
from .pipeline import student_step_flops
from .resources import forward_flops, parameter_count
from .softlabels.builder import autoencoder_flops, similarity_flops
from .spec import NetworkSpec, RunSpec

META = torch.device("meta")


@dataclass(frozen=True)
class Stage:
    """One line of the cost table: a stage, its model, FLOPs per image, images per epoch, epochs."""

    group: str  # "reffakd soft targets", "teacher soft targets", "student"
    stage: str
    model: str
    parameters: int
    flops_per_image: int
    images: int
    epochs: int

    @property
    def flops(self) -> int:
        return self.flops_per_image * self.images * self.epochs


def recipe_cost(spec: RunSpec, where: str) -> dict[str, Any]:
    """The stages of one student's soft targets (the recipe's autoencoder, or its teacher) and its training."""
    data, dataset = spec.data, spec.data.dataset
    size = DATASET_SIZES.get(dataset)
    if size is None:
        raise ReffAKDError(
            f"cost needs the size of dataset {dataset!r} ({where}); it knows {', '.join(sorted(DATASET_SIZES))}"
        )
    side = data.image_size or size.image_size
    shape = (size.channels, side, side)
    val = default_val_size(size.train_images) if data.val_size is None else int(data.val_size)
    train = size.train_images - val
    trained = spec.teacher if isinstance(spec.teacher, NetworkSpec) else NetworkSpec("resnet18", OptimConfig())
    student_optim, teacher_optim = spec.student.optim, trained.optim
    ae_epochs = spec.soft_label_config().autoencoder.epochs
    with torch.device(META):
        student_name, teacher_name = spec.student.model, trained.model or "resnet18"
        student = create_model(student_name, num_classes=size.num_classes, in_channels=shape[0], image_size=shape[1:])
        teacher = create_model(teacher_name, num_classes=size.num_classes, in_channels=shape[0], image_size=shape[1:])
        ae = ConvAutoencoder(shape[0], shape[1:])
    ae_step, ae_fwd, ae_enc = autoencoder_flops(ae)
    ae_params, t_params, s_params = parameter_count(ae), parameter_count(teacher), parameter_count(student)
    t_step, t_fwd = student_step_flops(teacher, shape, META), forward_flops(teacher, shape)
    s_step, s_fwd = student_step_flops(student, shape, META), forward_flops(student, shape)
    sim_flops = similarity_flops(train, ae.embedding_dim, size.num_classes)
    soft, teach, stud = "reffakd soft targets", "teacher soft targets", "student"
    epochs = student_optim.epochs
    stages = [
        Stage(soft, "autoencoder training steps", "autoencoder", ae_params, ae_step, train, ae_epochs),
        Stage(soft, "autoencoder validation", "autoencoder", ae_params, ae_fwd, val, ae_epochs),
        Stage(soft, "embedding (encoder)", "autoencoder", ae_params, ae_enc, train, 1),
        Stage(soft, "class similarity", "-", 0, sim_flops, 1, 1),
        Stage(teach, "teacher training steps", teacher_name, t_params, t_step, train, teacher_optim.epochs),
        Stage(teach, "teacher validation", teacher_name, t_params, t_fwd, val, teacher_optim.epochs),
        Stage(teach, "teacher forward while the student trains", teacher_name, t_params, t_fwd, train, epochs),
        Stage(stud, "student training steps", student_name, s_params, s_step, train, epochs),
        Stage(stud, "student validation", student_name, s_params, s_fwd, val, epochs),
    ]
    totals = {g: sum(s.flops for s in stages if s.group == g) for g in (soft, teach, stud)}
    return {
        "dataset": dataset,
        "input_shape": list(shape),
        "train_images": train,
        "val_images": val,
        "stages": stages,
        "totals": totals,
        "teacher_over_reffakd": totals[teach] / totals[soft],
        "kd_over_reffakd_run": (totals[teach] + totals[stud]) / (totals[soft] + totals[stud]),
    }


def cost_json(preset: str, cost: dict[str, Any]) -> dict[str, Any]:
    """The same, as JSON-ready data."""
    stages = [{**s.__dict__, "flops": s.flops} for s in cost["stages"]]
    return {"preset": preset, "computed_from": "FLOP counts x images x epochs", **cost, "stages": stages}
