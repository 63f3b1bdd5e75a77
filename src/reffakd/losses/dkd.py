"""Decoupled KD (Zhao et al., CVPR 2022) on target probabilities from any source.

With q the teacher distribution at temperature T and p = softmax(z / T) the student's:

    TCKD = KL([q_y, 1 - q_y] || [p_y, 1 - p_y])                       (target vs the rest)
    NCKD = KL(q_{k != y} / (1 - q_y) || p_{k != y} / (1 - p_y))        (among the non-targets)
    L    = ce_weight * CE(z, y) + w(epoch) * T^2 * (alpha * TCKD + beta * NCKD)

both KLs batchmean, w(epoch) = min(epoch / warmup, 1). Written on probabilities rather than teacher
logits, so an autoencoder soft-label row (AESL) stands in for the teacher without special cases;
for a network teacher q = softmax(teacher_logits / T), which is DKD as released.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ReffAKDError
from .kd import compute_dtype


def _kl_batchmean(target: torch.Tensor, log_pred: torch.Tensor) -> torch.Tensor:
    """sum_k target * (log target - log_pred), 0 where target is 0, averaged over the batch."""
    return (torch.xlogy(target, target) - target * log_pred).sum(1).mean()


def dkd_terms(
    logits: torch.Tensor, targets: torch.Tensor, target_probs: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (TCKD, NCKD), each already multiplied by T^2."""
    if logits.shape != target_probs.shape:
        raise ReffAKDError(
            f"the model gives {logits.shape[1]} logits but the soft targets have {target_probs.shape[1]} classes"
        )
    dtype = compute_dtype(logits, target_probs)
    log_p = F.log_softmax(logits.to(dtype) / temperature, dim=1)
    q = target_probs.to(dtype)
    gt = F.one_hot(targets, logits.shape[1]).bool()
    # Student: log p_y and log(1 - p_y) = logsumexp of the non-target log-probabilities (stable).
    log_p_nontarget_all = log_p.masked_fill(gt, float("-inf"))
    log_b_student = torch.stack(
        [log_p.gather(1, targets[:, None]).squeeze(1), torch.logsumexp(log_p_nontarget_all, dim=1)], dim=1
    )
    q_y = q.gather(1, targets[:, None]).squeeze(1)
    b_teacher = torch.stack([q_y, (1.0 - q_y).clamp_min(0.0)], dim=1)
    tckd = _kl_batchmean(b_teacher, log_b_student)
    # Non-target distributions, renormalised in float64: a confident teacher's non-target mass can be
    # subnormal in float32 (a logit gap / T near 90), and dividing it by the smallest normal number instead
    # of its sum gave rows summing to less than 1 and a negative NCKD. A one-hot row (no non-target mass
    # at all) contributes 0. Each row's KL is >= 0 exactly; a value rounded below 0 is clamped, but not its
    # gradient: a student close to its teacher has rows of KL near 0, about half of them rounded below, and
    # clamping those dropped their gradient (up to all of it, for a student equal to the teacher up to 1e-3).
    q_nt = q.masked_fill(gt, 0.0).double()
    mass = q_nt.sum(1, keepdim=True)
    q_nt = torch.where(mass > 0, q_nt / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.zeros_like(q_nt))
    log_p_nt = F.log_softmax((logits.to(dtype) / temperature).masked_fill(gt, float("-inf")), dim=1).masked_fill(
        gt, 0.0
    )
    rows = (torch.xlogy(q_nt, q_nt) - q_nt * log_p_nt.double()).sum(1)
    rows = rows + (rows.clamp_min(0.0) - rows).detach()  # the value clamped, the gradient the KL's own
    nckd = rows.mean().to(dtype)
    t2 = temperature**2
    return tckd * t2, nckd * t2


def dkd_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    target_probs: torch.Tensor,
    *,
    ce_weight: float,
    alpha: float,
    beta: float,
    temperature: float,
    warmup_factor: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Weighted terms as logged: ``ce``, ``tckd``, ``nckd``."""
    tckd, nckd = dkd_terms(logits, targets, target_probs, temperature)
    return {
        "ce": ce_weight * F.cross_entropy(logits, targets),
        "tckd": warmup_factor * alpha * tckd,
        "nckd": warmup_factor * beta * nckd,
    }
