"""The methods: loss forms, soft-target sources, and the named presets of (form, source, parameters).

A loss form says how the student's logits z meet a batch of soft targets q; a source says where q
comes from. Any form runs with any source unless the form refuses it (``FORM+SOURCE``, e.g.
``dkd+ps-kd``); the named methods are presets:

==========  ===============================================================  ====================================
form        loss                                                             presets (source)
==========  ===============================================================  ====================================
kd          (1 - a) CE + a T^2 KL(q || softmax(z / T))                       tfkd-reg (virtual-teacher),
                                                                             tfkd-self (ce-student), kd (teacher),
                                                                             reffakd (aesl), reffakd-instance
                                                                             (aesl-instance)
dkd         w CE + warm(e) T^2 (alpha TCKD + beta NCKD)                      dkd (teacher), dkd-aesl (aesl)
soft-ce     (1 - a) CE + a H(q, softmax(z)), q at T = 1                      ols (ols), ps-kd (ps-kd)
ce-kd       CE + lambda T^2 KL(q || softmax(z / T))                          cs-kd (cs-kd)
==========  ===============================================================  ====================================

``ce`` and ``ls`` (CE against (1 - eps) onehot + eps / C) take no source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError
from ..losses import (
    check_alpha_temperature,
    check_temperature,
    dkd_loss,
    kl_to_targets,
    label_smoothing_ce,
    soft_cross_entropy,
    soft_target_kd,
)
from ..resources import forward_flops
from ..sources import (
    ClassTable,
    OnlineClassTable,
    PartnerPredictions,
    PreviousPredictions,
    SoftTargetSource,
    instance_soft_label_source,
    structured_soft_label_table,
    structured_teacher_table,
    virtual_teacher_table,
)
from .base import Distiller
from .params import NoParams, Params, Range, param
from .registry import (
    LEARNED,
    OWN_TABLE,
    SAME_SEED_CE,
    SOFT_LABELS,
    SOFT_LABELS_SEMI,
    TEACHER,
    BuildContext,
    LossForm,
    TargetSource,
    register_loss_form,
    register_method,
    register_preset,
    register_source,
)

# --------------------------------------------------------------------------- parameter records

UNIT = Range(0.0, 1.0)
POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
TEMPERATURE = Range(0.0, 100.0, low_open=True)  # T^2 of T = 1e300 overflowed into a traceback


@dataclass(frozen=True)
class KDParams(Params):
    alpha: float = param(0.5, "weight of the soft-target term", range=UNIT, tune=(0.1, 0.3, 0.5, 0.7, 0.9))
    temperature: float = param(
        4.0, "distillation temperature", range=TEMPERATURE, short="-T", tune=(1.0, 2.0, 4.0, 8.0)
    )


@dataclass(frozen=True)
class VirtualTeacherParams(Params):
    own_probability: float = param(
        0.9,
        "the virtual teacher's own-class probability a",
        range=Range(0.0, 1.0, low_open=True, high_open=True),
        tune=(0.5, 0.7, 0.9, 0.95),
    )


@dataclass(frozen=True)
class SoftCEParams(Params):
    alpha: float = param(0.5, "weight of the soft-target term", range=UNIT, tune=(0.1, 0.3, 0.5, 0.7, 0.9))


@dataclass(frozen=True)
class CEKDParams(Params):
    kl_weight: float = param(
        1.0, "weight lambda of the T^2 KL term (beside a full CE)", range=NON_NEGATIVE, tune=(0.5, 1.0, 2.0, 4.0)
    )
    temperature: float = param(
        4.0, "distillation temperature", range=TEMPERATURE, short="-T", tune=(1.0, 2.0, 4.0, 8.0)
    )


@dataclass(frozen=True)
class PSKDParams(Params):
    label: ClassVar[str] = "PS-KD "
    final_alpha: float = param(
        0.8,
        "PS-KD's a_T: weight of the previous-epoch prediction in the last epoch, ramped linearly",
        range=UNIT,
        tune=(0.2, 0.4, 0.6, 0.8, 0.9),
    )


@dataclass(frozen=True)
class LSParams(Params):
    label: ClassVar[str] = "label-smoothing "
    epsilon: float = param(
        0.1, "label-smoothing epsilon", range=Range(0.0, 1.0, high_open=True), tune=(0.05, 0.1, 0.2, 0.3, 0.4)
    )


OWN_MASS = Range(0.0, 1.0, low_open=True, high_open=True)


@dataclass(frozen=True)
class TableMassParams(Params):
    """The mass knob of a class table whose structure is a placebo control (``uniform``)."""

    own_mass: float | None = param(
        None, "own-class probability of every row of the class table", range=OWN_MASS,
        default_text="each row's own", tune=(0.5, 0.7, 0.9),
    )  # fmt: skip


@dataclass(frozen=True)
class TableShapeParams(TableMassParams):
    """Mass and sharpness of a class table's rows, set apart (``softlabels.structure.restructure``)."""

    off_temperature: float | None = param(
        None, "temperature of the softmax over each row's other-class scores (similarities, or a network's "
        "log-probabilities)", range=TEMPERATURE, default_text="the table's own proportions", tune=(0.05, 0.1, 0.2, 0.5),
    )  # fmt: skip


@dataclass(frozen=True)
class ShuffledTableParams(TableShapeParams):
    shuffle_seed: int = param(0, "seed of the shuffled rows' permutations", range=NON_NEGATIVE)


# DKD's release: CE weight 1, alpha 1, T 4, warm-up 20 of 240 epochs; beta 8 (resnet32x4 -> resnet8x4)
# or 2 (resnet56 -> resnet20). Short runs keep the warm-up's share of training (1/12) by default.
DKD_WARMUP_FRACTION = 20 / 240


@dataclass(frozen=True)
class DKDParams(Params):
    label: ClassVar[str] = "DKD "
    ce_weight: float = param(1.0, "weight of the cross-entropy term", range=NON_NEGATIVE)
    alpha: float = param(1.0, "weight of the target-class term TCKD", range=NON_NEGATIVE)
    beta: float = param(2.0, "weight of the non-target term NCKD", range=NON_NEGATIVE, tune=(0.5, 1.0, 2.0, 4.0, 8.0))
    temperature: float = param(
        4.0, "distillation temperature", range=TEMPERATURE, short="-T", tune=(1.0, 2.0, 4.0, 8.0)
    )
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
        q = self.soft_targets(images, targets, self.temperature)
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

    def cuda_graph_blocker(self) -> str | None:
        if self.warmup_epochs > 0:
            return f"DKD's warm-up ramps its weight step by step (warmup_epochs {self.warmup_epochs}; 0 has none)"
        return super().cuda_graph_blocker()

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        q = self.soft_targets(images, targets, self.temperature)
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


class SoftCrossEntropy(Distiller):
    """(1 - a) CE + a H(q, softmax(z)): OLS (a = 0.5) and PS-KD (a = 1, its targets already mix in the label).

    The soft cross-entropy is linear in q, so with a learned q it is label smoothing toward q.
    """

    def __init__(self, student: nn.Module, source: SoftTargetSource, alpha: float) -> None:
        super().__init__(student)
        SoftCEParams(alpha=alpha).validate()
        self.source = source
        self.alpha = float(alpha)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        q = self.soft_targets(images, targets, 1.0)
        losses = {"soft": self.alpha * soft_cross_entropy(logits, q)}
        if self.alpha < 1.0:
            losses = {"ce": (1.0 - self.alpha) * F.cross_entropy(logits, targets), **losses}
        return logits, losses

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.alpha, **self.source.describe()}


class CEPlusKD(Distiller):
    """CE + lambda T^2 KL(q || softmax(z / T)): CS-KD's loss, a full CE beside the KD term (not a convex mix)."""

    def __init__(self, student: nn.Module, source: SoftTargetSource, kl_weight: float, temperature: float) -> None:
        super().__init__(student)
        CEKDParams(kl_weight=kl_weight, temperature=temperature).validate()
        check_temperature(temperature)
        self.source = source
        self.kl_weight, self.temperature = float(kl_weight), float(temperature)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        q = self.soft_targets(images, targets, self.temperature)
        kd = kl_to_targets(logits, q, self.temperature)
        return logits, {"ce": F.cross_entropy(logits, targets), "kd": self.kl_weight * self.temperature**2 * kd}

    def describe(self) -> dict[str, Any]:
        return {"kl_weight": self.kl_weight, "temperature": self.temperature, **self.source.describe()}


# --------------------------------------------------------------------------- loss forms


def _dkd_refuses(source: TargetSource) -> str | None:
    if source.empty_at_start:
        return (
            f"dkd needs a distribution for every image, but {source.name}'s targets are all zero in the first epoch "
            "(its TCKD would push the true class to 0); use kd, soft-ce or ce-kd with it"
        )
    return None


register_loss_form(LossForm(
    "kd", KDParams, lambda st, p, src, ctx: SoftTargetKD(st, src, p.alpha, p.temperature),
    "(1 - alpha) CE + alpha T^2 KL(q || softmax(z / T))",
))  # fmt: skip
register_loss_form(LossForm(
    "dkd", DKDParams,
    lambda st, p, src, ctx: DKD(
        st, src, ce_weight=p.ce_weight, alpha=p.alpha, beta=p.beta, temperature=p.temperature,
        warmup_epochs=p.warmup(ctx.total_epochs),
    ),
    "ce_weight CE + warm-up T^2 (alpha TCKD + beta NCKD) against q", refuses=_dkd_refuses,
))  # fmt: skip
register_loss_form(LossForm(
    "soft-ce", SoftCEParams, lambda st, p, src, ctx: SoftCrossEntropy(st, src, p.alpha),
    "(1 - alpha) CE + alpha H(q, softmax(z))",
))  # fmt: skip
register_loss_form(LossForm(
    "ce-kd", CEKDParams, lambda st, p, src, ctx: CEPlusKD(st, src, p.kl_weight, p.temperature),
    "CE + kl_weight T^2 KL(q || softmax(z / T))",
))  # fmt: skip


# --------------------------------------------------------------------------- sources


def _given(st: nn.Module, p: Any, given: SoftTargetSource | None, ctx: BuildContext) -> SoftTargetSource:
    assert given is not None  # resolve_source refused a run without its input
    return given


def _student_forward_flops(student: nn.Module, ctx: BuildContext) -> int:
    return forward_flops(student, ctx.input_shape) if ctx.input_shape is not None else 0


def _need_samples(name: str, ctx: BuildContext) -> int:
    if ctx.num_samples < 1:
        raise ReffAKDError(f"{name} keeps one row per training image and needs their number (num_samples)")
    return ctx.num_samples


def _instance(st: nn.Module, p: Any, given: SoftTargetSource | None, ctx: BuildContext) -> SoftTargetSource:
    return instance_soft_label_source(ctx.soft_labels, ctx.split_fingerprint)


# The semi-supervised sources are the same tables, made by an autoencoder that also trained on unlabelled images.
for _semi, _kind, _what in (
    ("", SOFT_LABELS, ""),
    ("-semi", SOFT_LABELS_SEMI, ", autoencoder also on unlabelled images"),
):
    register_source(
        TargetSource(f"aesl{_semi}", _kind, NoParams, _given, f"the autoencoder soft labels' class table{_what}")
    )
    register_source(TargetSource(
        f"aesl-instance{_semi}", _kind, NoParams, _instance, f"the autoencoder soft labels' per-image table{_what}",
        per_image=True,
    ))  # fmt: skip
register_source(TargetSource("teacher", TEACHER, NoParams, _given, "a teacher network"))


def _need_data(name: str, ctx: BuildContext) -> Any:
    if ctx.data is None:
        raise ReffAKDError(f"{name} computes its table from the labelled training images and needs them (data)")
    return ctx.data


# The structure study's arms (docs/RESULTS.md, "Does the class structure carry knowledge?"): the autoencoder's and a
# trained network's class tables, each as computed, with its off-diagonal entries shuffled, or with them uniform.
_STRUCTURE_PARAMS = {"similarity": TableShapeParams, "shuffled": ShuffledTableParams, "uniform": TableMassParams}
_STRUCTURE_TEXT = {
    "similarity": "", "shuffled": ", its off-diagonal entries shuffled per row (a placebo)",
    "uniform": ", its off-diagonal mass spread evenly (a placebo: label smoothing at the same mass)",
}  # fmt: skip


def _shape(p: Any, structure: str) -> dict[str, Any]:
    """The ``restructure`` knobs of a structure arm's parameters."""
    return {
        "structure": structure, "own_mass": p.own_mass, "off_temperature": getattr(p, "off_temperature", None),
        "seed": getattr(p, "shuffle_seed", 0),
    }  # fmt: skip


for _structure, _params in _STRUCTURE_PARAMS.items():
    register_source(TargetSource(
        f"aesl-{_structure}", SOFT_LABELS, _params,
        lambda st, p, given, ctx, s=_structure: structured_soft_label_table(ctx.soft_labels, **_shape(p, s)),
        f"the autoencoder soft labels' class table, own mass and sharpness set apart{_STRUCTURE_TEXT[_structure]}",
        restructures=True,
    ))  # fmt: skip
for _structure, _params in _STRUCTURE_PARAMS.items():
    register_source(TargetSource(
        f"teacher-table-{_structure}", TEACHER, _params,
        lambda st, p, given, ctx, s=_structure: structured_teacher_table(
            given, _need_data(f"teacher-table-{s}", ctx), **_shape(p, s)
        ),
        f"a teacher's mean softmax per class over the labelled images{_STRUCTURE_TEXT[_structure]}",
    ))  # fmt: skip
register_source(TargetSource("ce-student", SAME_SEED_CE, NoParams, _given, "the CE student of the same seed"))
register_source(TargetSource(
    "virtual-teacher", OWN_TABLE, VirtualTeacherParams,
    lambda st, p, given, ctx: ClassTable(  # exact in float64, softened in the run's precision
        virtual_teacher_table(ctx.num_classes, p.own_probability, torch.float64), as_logits=True,
        name="virtual-teacher", float64_out=False,
    ),
    "Tf-KD's virtual teacher (a on the true class), softened at T",
))  # fmt: skip
register_source(TargetSource(
    "ols", LEARNED, NoParams, lambda st, p, given, ctx: OnlineClassTable(ctx.num_classes),
    "OLS's class table of the previous epoch's correct predictions", empty_at_start=True,
))  # fmt: skip
register_source(TargetSource(
    "ps-kd", LEARNED, PSKDParams,
    lambda st, p, given, ctx: PreviousPredictions(
        _need_samples("ps-kd", ctx), ctx.num_classes, p.final_alpha, ctx.total_epochs
    ),
    "PS-KD's (1 - a_t) onehot + a_t (the image's prediction one epoch before)",
))  # fmt: skip
register_source(TargetSource(
    "cs-kd", LEARNED, NoParams,
    lambda st, p, given, ctx: PartnerPredictions(ctx.num_classes, _student_forward_flops(st, ctx)),
    "CS-KD's prediction on a same-class partner image, softened at T",
))  # fmt: skip


# --------------------------------------------------------------------------- the registered methods, in report order


@register_method("ce", role="baseline", summary="cross-entropy, no KD")
def _ce(student: nn.Module, p: Params, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    return CrossEntropy(student)


@register_method("ls", params=LSParams, summary="label smoothing (Szegedy et al. 2016)")
def _ls(student: nn.Module, p: LSParams, source: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
    return LabelSmoothing(student, p.epsilon)


register_preset("tfkd-reg", "kd", "virtual-teacher", summary="Tf-KD with a virtual teacher (Yuan et al. 2020)")
register_preset("tfkd-self", "kd", "ce-student", summary="Tf-KD self: a trained student as its own teacher")
register_preset("kd", "kd", "teacher", summary="vanilla KD with a teacher network (Hinton et al. 2015)")
register_preset("dkd", "dkd", "teacher", summary="decoupled KD with a teacher network (Zhao et al. 2022)")
register_preset("dkd-aesl", "dkd", "aesl", summary="DKD with autoencoder soft labels as the teacher")
register_preset(
    "reffakd", "kd", "aesl", summary="KD against autoencoder soft labels (Doshi and Kim 2024)", cost_reference=True
)
register_preset(
    "ols", "soft-ce", "ols", summary="online label smoothing: a class table of correct predictions (Zhang et al. 2021)"
)
register_preset(
    "ps-kd", "soft-ce", "ps-kd", defaults={"alpha": 1.0}, tune={"alpha": ()},
    summary="progressive self-KD: targets mix the label and the last epoch's prediction (Kim et al. 2021)",
)  # fmt: skip
register_preset(
    "cs-kd", "ce-kd", "cs-kd", summary="class-wise self-KD: a same-class partner's prediction (Yun et al. 2020)"
)
register_preset(
    "reffakd-instance", "kd", "aesl-instance", summary="KD against per-image autoencoder soft labels (ours)"
)
# Semi-supervised (ours): the autoencoder also trains on the training images whose labels a budget withholds.
register_preset("reffakd-semi", "kd", "aesl-semi", summary="ReffAKD, autoencoder also on unlabelled images (ours)")
register_preset(
    "reffakd-instance-semi", "kd", "aesl-instance-semi",
    summary="per-image ReffAKD, autoencoder also on unlabelled images (ours)",
)  # fmt: skip
register_preset("dkd-aesl-semi", "dkd", "aesl-semi", summary="DKD-AESL, autoencoder also on unlabelled images (ours)")
# The structure study's arms: the ReffAKD loss against a class table whose mass and structure are set apart. A
# comparison holds the mass and sharpness fixed (matched across the arms), and equal tuning tries the same four loss
# settings for every arm (no sampling, so the arms differ only in structure).
CONTROL_TUNING = {"alpha": (0.5, 0.9), "temperature": (1.0, 4.0)}
for _family, _what in (("aesl", "autoencoder soft labels"), ("teacher-table", "a teacher's class table")):
    for _structure in _STRUCTURE_PARAMS:
        _fixed = {key: () for key in ("own_mass", "off_temperature") if key in _STRUCTURE_PARAMS[_structure].info()}
        register_preset(
            f"{_family}-{_structure}", "kd", f"{_family}-{_structure}", tune={**CONTROL_TUNING, **_fixed},
            summary=f"KD against {_what}, {_structure} structure at a set own-class mass (ours)", role="control",
        )  # fmt: skip
