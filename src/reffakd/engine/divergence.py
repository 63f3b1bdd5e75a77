"""Non-finite training is a failure, not a result: a NaN or infinite loss stops the run in one line.

Training on after a NaN only writes NaN weights, NaN metrics and a summary that reads as a success.
The check runs before the step is applied, so the last resume checkpoint (written at the previous
epoch's end) is the last finite state, and ``OUT.partial`` keeps it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ReffAKDError


def _diverged(what: str, value: float, where: str, lr: float) -> ReffAKDError:
    return ReffAKDError(
        f"training diverged: {what} is {value} {where}; the learning rate (lr {lr:g}) or a loss weight "
        "(alpha, beta...) is likely too large: lower it and start a new run (a resume checkpoint left in the run "
        "folder is from before the divergence)",
        params=("lr",),
    )


def check_loss(loss: torch.Tensor, epoch: int, step: int, lr: float, prefix: str = "") -> None:
    """Stop at a non-finite training loss, before the optimiser applies it (``step``: batches done before it)."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise _diverged("the training loss", value, f"at {prefix}epoch {epoch}, batch {step + 1}", lr)


def check_record(record: dict[str, Any], prefix: str = "") -> None:
    """Stop at an epoch whose metrics are not finite (finite losses whose weights overflowed, for one)."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _diverged(key, value, f"at the end of {prefix}epoch {record.get('epoch')}", record.get("lr", 0.0))
