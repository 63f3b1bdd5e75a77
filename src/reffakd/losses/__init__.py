"""Loss stage: every loss defined once, batchmean reductions, explicit T^2."""

from .dkd import dkd_loss, dkd_terms
from .kd import (
    check_alpha_temperature,
    check_temperature,
    compute_dtype,
    kl_to_targets,
    label_smoothing_ce,
    soft_cross_entropy,
    soft_target_kd,
)
from .reffakd_loss import InstanceKDLoss, ReffAKDLoss

__all__ = [
    "InstanceKDLoss",
    "ReffAKDLoss",
    "check_alpha_temperature",
    "check_temperature",
    "compute_dtype",
    "dkd_loss",
    "dkd_terms",
    "kl_to_targets",
    "label_smoothing_ce",
    "soft_cross_entropy",
    "soft_target_kd",
]
