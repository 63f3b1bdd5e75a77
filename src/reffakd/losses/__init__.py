"""Loss stage: every loss defined once, batchmean reductions, explicit T^2."""

from .reffakd_loss import ReffAKDLoss, check_alpha_temperature, kl_to_targets

__all__ = ["ReffAKDLoss", "check_alpha_temperature", "kl_to_targets"]
