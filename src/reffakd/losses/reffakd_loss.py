"""The ReffAKD student loss, defined once.

    L = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(q_y || softmax(z / T))

with q_y = soft_labels[y] (the autoencoder soft label of the true class, not softened again),
KL averaged over the batch ("batchmean"). The authors' notebooks mix a per-sample-mean soft
cross-entropy with ``KLDivLoss()``'s default reduction, which also divides by the class count; here
one reduction and an explicit T^2 hold for every method.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError

if TYPE_CHECKING:
    from ..softlabels.artifact import SoftLabels


def check_alpha_temperature(alpha: float, temperature: float) -> None:
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ReffAKDError(f"alpha {alpha} is out of range: it must lie in [0, 1]")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ReffAKDError(f"temperature {temperature} is out of range: it must be a finite number > 0")


def kl_to_targets(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(target || softmax(logits / T)), summed over classes, averaged over the batch.

    Zero target entries contribute 0 (the 0 * log 0 = 0 convention), as ``F.kl_div`` does.
    """
    log_p = F.log_softmax(logits / temperature, dim=1)
    return F.kl_div(log_p, target_probs, reduction="batchmean")


class ReffAKDLoss(nn.Module):
    """``criterion(logits, targets)`` for a student trained against autoencoder soft labels.

    The soft-label table is a buffer: it moves with ``.to(device)`` and the per-batch cost is one
    row lookup.
    """

    def __init__(self, soft_labels: "SoftLabels | torch.Tensor", alpha: float = 0.5, temperature: float = 4.0) -> None:
        super().__init__()
        check_alpha_temperature(alpha, temperature)
        matrix = soft_labels if isinstance(soft_labels, torch.Tensor) else soft_labels.matrix
        self.register_buffer("soft_labels", matrix.detach().to(torch.float32).clone())
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def components(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two weighted terms, named as they are logged: ``ce`` and ``kd``."""
        if logits.shape[1] != self.soft_labels.shape[0]:
            raise ReffAKDError(f"the model gives {logits.shape[1]} logits but the soft labels have {self.soft_labels.shape[0]} classes")
        ce = F.cross_entropy(logits, targets)
        q = self.soft_labels[targets]
        kd = kl_to_targets(logits.float(), q, self.temperature)
        return {"ce": (1.0 - self.alpha) * ce, "kd": self.alpha * self.temperature**2 * kd}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, targets)
        return parts["ce"] + parts["kd"]
