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

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..losses import check_alpha_temperature, dkd_loss, label_smoothing_ce, soft_target_kd
from ..sources import ClassTable, SoftTargetSource, virtual_teacher_table
from .base import Distiller
from .params import Params, Range, param
from .registry import OWN_TABLE, SAME_SEED_CE, SOFT_LABELS, TEACHER, BuildContext, register_method

# --------------------------------------------------------------------------- parameter records

UNIT = Range(0.0, 1.0)
POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
TEMPERATURE = Range(0.0, 100.0, low_open=True)  # T^2 of T = 1e300 overflowed into a traceback


@dataclass(frozen=True)
class KDParams(Params):
    alpha: float = param(0.5, "weight of the soft-target term", range=UNIT)
    temperature: float = param(4.0, "distillation temperature", range=TEMPERATURE, short="-T")


@dataclass(frozen=True)
class TfKDRegParams(KDParams):
    own_probability: float = param(
        0.9, "the virtual teacher's own-class probability a", range=Range(0.0, 1.0, low_open=True, high_open=True)
    )


@dataclass(frozen=True)
class LSParams(Params):
    label: ClassVar[str] = "label-smoothing "
    epsilon: float = param(0.1, "label-smoothing epsilon", range=Range(0.0, 1.0, high_open=True))


# DKD's release: CE weight 1, alpha 1, T 4, warm-up 20 of 240 epochs; beta 8 (resnet32x4 -> resnet8x4)
# or 2 (resnet56 -> resnet20). Short runs keep the warm-up's share of training (1/12) by default.
DKD_WARMUP_FRACTION = 20 / 240


@dataclass(frozen=True)
class DKDParams(Params):
    label: ClassVar[str] = "DKD "
    ce_weight: float = param(1.0, "weight of the cross-entropy term", range=NON_NEGATIVE)
    alpha: float = param(1.0, "weight of the target-class term TCKD", range=NON_NEGATIVE)
    beta: float = param(2.0, "weight of the non-target term NCKD", range=NON_NEGATIVE)
    temperature: float = param(4.0, "distillation temperature", range=TEMPERATURE, short="-T")
    warmup_epochs: int | None = param(
        None, "epochs of linear warm-up of the KD weight", range=NON_NEGATIVE, default_text="1/12 of the epochs"
    )

    def warmup(self, total_epochs: int) -> int:
        if self.warmup_epochs is not None:
            return int(self.warmup_epochs)
        return max(1, round(DKD_WARMUP_FRACTION * total_epochs))


# --------------------------------------------------------------------------- the distillers


class CrossEntropy(Distiller):
    """The no-KD baseline."""


class LabelSmoothing(Distiller):
    def __init__(self, student: nn.Module, epsilon: float) -> None:
        super().__init__(student)
        LSParams(epsilon=epsilon).validate()
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
        DKDParams(ce_weight, alpha, beta, temperature, warmup_epochs).validate()
        self.source = source
        self.ce_weight, self.alpha, self.beta, self.temperature = (
            float(ce_weight),
            float(alpha),
            float(beta),
            float(temperature),
        )
        self.warmup_epochs = int(warmup_epochs)

    def warmup_factor(self, epoch: float) -> float:
        """Linear ramp of the KD weight over the training progress (in epochs, step by step), full from
        ``warmup_epochs`` on.

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


# --------------------------------------------------------------------------- the registered methods, in report order


@register_method("ce", role="baseline", summary="cross-entropy, no KD")
def _ce(student: nn.Module, p: Params, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    return CrossEntropy(student)


@register_method("ls", params=LSParams, summary="label smoothing (Szegedy et al. 2016)")
def _ls(student: nn.Module, p: LSParams, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    return LabelSmoothing(student, p.epsilon)


@register_method(
    "tfkd-reg", params=TfKDRegParams, source=OWN_TABLE, summary="Tf-KD with a virtual teacher (Yuan et al. 2020)"
)
def _tfkd_reg(student: nn.Module, p: TfKDRegParams, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    table = virtual_teacher_table(ctx.num_classes, p.own_probability)
    return SoftTargetKD(student, ClassTable(table, as_logits=True, name="virtual-teacher"), p.alpha, p.temperature)


def _source_kd(student: nn.Module, p: KDParams, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    assert source is not None
    return SoftTargetKD(student, source, p.alpha, p.temperature)


def _source_dkd(student: nn.Module, p: DKDParams, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    assert source is not None
    return DKD(
        student, source, ce_weight=p.ce_weight, alpha=p.alpha, beta=p.beta, temperature=p.temperature,
        warmup_epochs=p.warmup(ctx.total_epochs),
    )  # fmt: skip


register_method(
    "tfkd-self", params=KDParams, source=SAME_SEED_CE, summary="Tf-KD self: a trained student as its own teacher"
)(_source_kd)
register_method(
    "kd", params=KDParams, source=TEACHER, summary="vanilla KD with a teacher network (Hinton et al. 2015)"
)(_source_kd)
register_method(
    "dkd", params=DKDParams, source=TEACHER, summary="decoupled KD with a teacher network (Zhao et al. 2022)"
)(_source_dkd)
register_method(
    "dkd-aesl", params=DKDParams, source=SOFT_LABELS, summary="DKD with autoencoder soft labels as the teacher"
)(_source_dkd)
register_method(
    "reffakd", params=KDParams, source=SOFT_LABELS, summary="KD against autoencoder soft labels (Doshi and Kim 2024)"
)(_source_kd)
