"""The methods, each defined once on top of the losses and soft-target sources.

==========  ===========================================================================  ===========
method      loss (losses.kd / losses.dkd)                                                targets
==========  ===========================================================================  ===========
ce          CE                                                                           -
ls          CE against (1 - eps) onehot + eps / C                                        -
tfkd-reg    (1 - a) CE + a T^2 KL(softmax(v_y / T) || softmax(z / T))                    virtual teacher v
tfkd-self   (1 - a) CE + a T^2 KL(softmax(s(x) / T) || softmax(z / T))                   trained student s
kd          (1 - a) CE + a T^2 KL(softmax(t(x) / T) || softmax(z / T))                   teacher t
dkd         w CE + warm(e) T^2 (alpha TCKD + beta NCKD), q = softmax(t(x) / T)           teacher t
dkd-aesl    the same with q = AESL row of y                                              soft labels
reffakd     (1 - a) CE + a T^2 KL(q_y || softmax(z / T)), q_y = AESL row of y            soft labels
==========  ===========================================================================  ===========
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ..errors import ReffAKDError
from ..losses import check_alpha_temperature, check_temperature, dkd_loss, label_smoothing_ce, soft_target_kd
from ..softlabels.artifact import SoftLabels
from ..sources import ClassTable, SoftTargetSource, TeacherNetwork, virtual_teacher_table
from .base import Distiller, register_distiller

KD_DEFAULTS = {"alpha": 0.5, "temperature": 4.0}
# DKD's release: CE weight 1, alpha 1, T 4, warm-up 20 of 240 epochs; beta 8 (resnet32x4 -> resnet8x4)
# or 2 (resnet56 -> resnet20). Short runs keep the warm-up's share of training (1/12) by default.
DKD_DEFAULTS = {"ce_weight": 1.0, "alpha": 1.0, "beta": 2.0, "temperature": 4.0, "warmup_epochs": None}
DKD_WARMUP_FRACTION = 20 / 240


def check_kd(params: dict[str, Any]) -> None:
    check_alpha_temperature(params["alpha"], params["temperature"])
    if "own_probability" in params and not 0.0 < params["own_probability"] < 1.0:
        raise ReffAKDError(f"own_probability {params['own_probability']} is out of range: it must lie in (0, 1)")


def check_ls(params: dict[str, Any]) -> None:
    eps = params["epsilon"]
    if not (math.isfinite(eps) and 0.0 <= eps < 1.0):
        raise ReffAKDError(f"label-smoothing epsilon {eps} is out of range: it must lie in [0, 1)")


def check_dkd(params: dict[str, Any]) -> None:
    check_temperature(params["temperature"])
    for name in ("ce_weight", "alpha", "beta"):
        if not (math.isfinite(params[name]) and params[name] >= 0):
            raise ReffAKDError(f"DKD {name} {params[name]} is out of range: it must be a finite number >= 0")
    warmup = params.get("warmup_epochs")
    if warmup is not None and (int(warmup) != warmup or warmup < 0):
        raise ReffAKDError(f"DKD warmup_epochs {warmup} is out of range: it must be a whole number of epochs >= 0")


class CrossEntropy(Distiller):
    """The no-KD baseline."""


class LabelSmoothing(Distiller):
    def __init__(self, student: nn.Module, epsilon: float) -> None:
        super().__init__(student)
        check_ls({"epsilon": epsilon})
        self.epsilon = float(epsilon)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, {"ce": label_smoothing_ce(logits, targets, self.epsilon)}

    def describe(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


class SoftTargetKD(Distiller):
    """Hinton-style KD against any soft-target source: kd, tfkd-self, tfkd-reg and reffakd."""

    def __init__(self, student: nn.Module, source: SoftTargetSource, alpha: float, temperature: float) -> None:
        super().__init__(student)
        check_alpha_temperature(alpha, temperature)
        self.source = source
        self.alpha, self.temperature = float(alpha), float(temperature)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        q = self.source.probabilities(images, targets, self.temperature)
        return logits, soft_target_kd(logits, targets, q, self.alpha, self.temperature)

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "temperature": self.temperature, **self.source.describe()}


class DKD(Distiller):
    """Decoupled KD against any soft-target source: dkd (teacher) and dkd-aesl (autoencoder soft labels)."""

    def __init__(
        self,
        student: nn.Module,
        source: SoftTargetSource,
        *,
        ce_weight: float,
        alpha: float,
        beta: float,
        temperature: float,
        warmup_epochs: int,
    ) -> None:
        super().__init__(student)
        check_dkd(
            {
                "ce_weight": ce_weight,
                "alpha": alpha,
                "beta": beta,
                "temperature": temperature,
                "warmup_epochs": warmup_epochs,
            }
        )
        self.source = source
        self.ce_weight, self.alpha, self.beta, self.temperature = (
            float(ce_weight),
            float(alpha),
            float(beta),
            float(temperature),
        )
        self.warmup_epochs = int(warmup_epochs)

    def warmup_factor(self, epoch: float) -> float:
        """Linear ramp of the KD weight over the training progress (in epochs, step by step), full from ``warmup_epochs`` on.

        DKD's release ramps per epoch (epoch e of a 20-epoch warm-up: e / 20). Per step is the same ramp
        made smooth, which matters for short runs: with a one-epoch warm-up a per-epoch ramp would start
        at full weight, and with lr 0.1 the T^2 (alpha TCKD + beta NCKD) term then diverged on
        Fashion-MNIST (docs/RESULTS.md).
        """
        return 1.0 if self.warmup_epochs == 0 else min(epoch / self.warmup_epochs, 1.0)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        q = self.source.probabilities(images, targets, self.temperature)
        return logits, dkd_loss(
            logits,
            targets,
            q,
            ce_weight=self.ce_weight,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            warmup_factor=self.warmup_factor(epoch),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "ce_weight": self.ce_weight,
            "alpha": self.alpha,
            "beta": self.beta,
            "temperature": self.temperature,
            "warmup_epochs": self.warmup_epochs,
            **self.source.describe(),
        }


def _aesl(soft_labels: SoftLabels) -> ClassTable:
    return ClassTable(soft_labels.matrix, name="aesl")


def _dkd_warmup(warmup_epochs: int | None, total_epochs: int) -> int:
    return max(1, round(DKD_WARMUP_FRACTION * total_epochs)) if warmup_epochs is None else int(warmup_epochs)


@register_distiller("ce", summary="cross-entropy, no KD")
def _ce(student: nn.Module, **_: Any) -> Distiller:
    return CrossEntropy(student)


@register_distiller("ls", check=check_ls, defaults={"epsilon": 0.1}, summary="label smoothing (Szegedy et al. 2016)")
def _ls(student: nn.Module, *, epsilon: float, **_: Any) -> Distiller:
    return LabelSmoothing(student, epsilon)


@register_distiller(
    "tfkd-reg",
    check=check_kd,
    defaults={**KD_DEFAULTS, "own_probability": 0.9},
    summary="Tf-KD with a virtual teacher (Yuan et al. 2020)",
)
def _tfkd_reg(
    student: nn.Module, *, num_classes: int, alpha: float, temperature: float, own_probability: float, **_: Any
) -> Distiller:
    return SoftTargetKD(
        student,
        ClassTable(virtual_teacher_table(num_classes, own_probability), as_logits=True, name="virtual-teacher"),
        alpha,
        temperature,
    )


@register_distiller(
    "tfkd-self",
    check=check_kd,
    needs="teacher",
    defaults=dict(KD_DEFAULTS),
    summary="Tf-KD self: a trained student as its own teacher",
)
def _tfkd_self(student: nn.Module, *, teacher: TeacherNetwork, alpha: float, temperature: float, **_: Any) -> Distiller:
    return SoftTargetKD(student, teacher, alpha, temperature)


@register_distiller(
    "kd",
    check=check_kd,
    needs="teacher",
    defaults=dict(KD_DEFAULTS),
    summary="vanilla KD with a teacher network (Hinton et al. 2015)",
)
def _kd(student: nn.Module, *, teacher: TeacherNetwork, alpha: float, temperature: float, **_: Any) -> Distiller:
    return SoftTargetKD(student, teacher, alpha, temperature)


@register_distiller(
    "dkd",
    check=check_dkd,
    needs="teacher",
    defaults=dict(DKD_DEFAULTS),
    summary="decoupled KD with a teacher network (Zhao et al. 2022)",
)
def _dkd(
    student: nn.Module, *, teacher: TeacherNetwork, total_epochs: int, warmup_epochs: int | None, **params: Any
) -> Distiller:
    return DKD(student, teacher, warmup_epochs=_dkd_warmup(warmup_epochs, total_epochs), **_dkd_params(params))


@register_distiller(
    "dkd-aesl",
    check=check_dkd,
    needs="soft_labels",
    defaults=dict(DKD_DEFAULTS),
    summary="DKD with autoencoder soft labels as the teacher distribution",
)
def _dkd_aesl(
    student: nn.Module, *, soft_labels: SoftLabels, total_epochs: int, warmup_epochs: int | None, **params: Any
) -> Distiller:
    return DKD(
        student, _aesl(soft_labels), warmup_epochs=_dkd_warmup(warmup_epochs, total_epochs), **_dkd_params(params)
    )


@register_distiller(
    "reffakd",
    check=check_kd,
    needs="soft_labels",
    defaults=dict(KD_DEFAULTS),
    summary="KD against autoencoder soft labels (Doshi and Kim 2024)",
)
def _reffakd(student: nn.Module, *, soft_labels: SoftLabels, alpha: float, temperature: float, **_: Any) -> Distiller:
    return SoftTargetKD(student, _aesl(soft_labels), alpha, temperature)


def _dkd_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in ("ce_weight", "alpha", "beta", "temperature")}
