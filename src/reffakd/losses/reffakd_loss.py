"""``ReffAKDLoss``: the soft-target KD loss against a fixed autoencoder soft-label table.

    L = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(q_y || softmax(z / T))

with q_y = soft_labels[y] (the autoencoder soft label of the true class, not softened again),
KL averaged over the batch ("batchmean"). The authors' notebooks mix a per-sample-mean soft
cross-entropy with ``KLDivLoss()``'s default reduction, which also divides by the class count; here
one reduction and an explicit T^2 hold for every method (``losses.kd``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..errors import ReffAKDError
from .kd import check_alpha_temperature, soft_target_kd

if TYPE_CHECKING:
    from ..softlabels.artifact import SoftLabels


class ReffAKDLoss(nn.Module):
    """``criterion(logits, targets)`` for a student trained against autoencoder soft labels.

    The soft-label table is a buffer: it moves with ``.to(device)`` and the per-batch cost is one
    row lookup.
    """

    def __init__(self, soft_labels: SoftLabels | torch.Tensor, alpha: float = 0.5, temperature: float = 4.0) -> None:
        super().__init__()
        check_alpha_temperature(alpha, temperature)
        matrix = soft_labels if isinstance(soft_labels, torch.Tensor) else soft_labels.matrix
        self.register_buffer("soft_labels", matrix.detach().to(torch.float32).clone())
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def components(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two weighted terms, named as they are logged: ``ce`` and ``kd``."""
        if logits.shape[1] != self.soft_labels.shape[0]:
            raise ReffAKDError(
                f"the model gives {logits.shape[1]} logits but the soft labels have {self.soft_labels.shape[0]} classes"
            )
        return soft_target_kd(logits, targets, self.soft_labels[targets], self.alpha, self.temperature)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, targets)
        return parts["ce"] + parts["kd"]


class InstanceKDLoss(nn.Module):
    """``criterion(logits, targets, index)`` against per-image autoencoder soft labels (``reffakd-instance``).

    ``index``: each image's position in the training split the soft labels were made on (``splits.train``; the
    artifact's ``instance_index`` gives its rows' order). The same loss as ``ReffAKDLoss``, with the image's own row
    in place of its class's.
    """

    def __init__(self, soft_labels: SoftLabels, alpha: float = 0.5, temperature: float = 4.0) -> None:
        super().__init__()
        check_alpha_temperature(alpha, temperature)
        n = int(soft_labels.instance_index.numel()) if soft_labels.instance_index is not None else 0
        self.register_buffer("soft_labels", soft_labels.instance_table(None, n).detach().clone())
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def components(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two weighted terms, named as they are logged: ``ce`` and ``kd``."""
        if logits.shape[1] != self.soft_labels.shape[1]:
            raise ReffAKDError(
                f"the model gives {logits.shape[1]} logits but the soft labels have {self.soft_labels.shape[1]} classes"
            )
        return soft_target_kd(logits, targets, self.soft_labels[index], self.alpha, self.temperature)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, targets, index)
        return parts["ce"] + parts["kd"]
