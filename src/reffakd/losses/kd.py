"""Soft-target KD, the loss shared by kd, tfkd-self, tfkd-reg and reffakd; soft cross-entropy; label smoothing.

    L = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(q || softmax(z / T))

q comes from a soft-target source (``reffakd.sources``): a teacher's softmax at T, a virtual
teacher, or an autoencoder soft-label row. KL is summed over classes and averaged over the batch
("batchmean"); T^2 keeps the soft term's gradient scale independent of T (Hinton et al. 2015).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ReffAKDError


def check_alpha_temperature(alpha: float, temperature: float) -> None:
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ReffAKDError(f"alpha {alpha} is out of range: it must lie in [0, 1]")
    check_temperature(temperature)


def check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ReffAKDError(f"temperature {temperature} is out of range: it must be a finite number > 0")


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half-precision inputs are computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def kl_to_targets(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(target || softmax(logits / T)), summed over classes, averaged over the batch.

    Zero target entries contribute 0 (the 0 * log 0 = 0 convention), as ``F.kl_div`` does. Computed in
    float64 when the logits or the targets are float64, else in float32.
    """
    dtype = compute_dtype(logits, target_probs)
    log_p = F.log_softmax(logits.to(dtype) / temperature, dim=1)
    return F.kl_div(log_p, target_probs.to(dtype), reduction="batchmean")


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """H(q, softmax(z)) = -sum_k q_k log softmax(z)_k, averaged over the batch (PS-KD's and OLS's soft term).

    Unlike the KL it keeps q's entropy, so its value is the releases' logged loss; its gradient is the KL's.
    """
    if logits.shape != target_probs.shape:
        raise ReffAKDError(
            f"the model gives {logits.shape[1]} logits but the soft targets have {target_probs.shape[1]} classes"
        )
    dtype = compute_dtype(logits, target_probs)
    return -(target_probs.to(dtype) * F.log_softmax(logits.to(dtype), dim=1)).sum(1).mean()


def soft_target_kd(
    logits: torch.Tensor, targets: torch.Tensor, target_probs: torch.Tensor, alpha: float, temperature: float
) -> dict[str, torch.Tensor]:
    """The two weighted terms, named as they are logged: ``ce`` and ``kd``."""
    if logits.shape != target_probs.shape:
        raise ReffAKDError(
            f"the model gives {logits.shape[1]} logits but the soft targets have {target_probs.shape[1]} classes"
        )
    ce = F.cross_entropy(logits, targets)
    kd = kl_to_targets(logits, target_probs, temperature)
    return {"ce": (1.0 - alpha) * ce, "kd": alpha * temperature**2 * kd}


def label_smoothing_ce(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Cross-entropy against (1 - eps) * onehot(y) + eps / C (Szegedy et al. 2016), batch mean."""
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)
