"""Non-finite training is a failure, not a result: a NaN or infinite loss stops the run in one line.

Training on after a NaN only writes NaN weights, NaN metrics and a summary that reads as a success.
The check reads the epoch's running loss sum (already on the device: a non-finite loss makes it non-finite) every
``LOSS_CHECK_STEPS`` steps, before that step is applied, and before anything is saved (an epoch's end, an
interrupt), so a resume checkpoint is always a finite state and ``OUT.partial`` keeps the last one. Reading the loss
at every step would make the host wait for the device at every step (found on a GPU: GPU.md).
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


LOSS_CHECK_STEPS = 20  # one read from the device per this many steps


def check_loss(loss_sum: torch.Tensor | float, epoch: int, step: int, lr: float, prefix: str = "") -> None:
    """Stop once the epoch's running loss sum is not finite: some loss up to batch ``step`` (1-based) was not."""
    value = float(loss_sum)
    if not math.isfinite(value):
        raise _diverged("the training loss", value, f"at {prefix}epoch {epoch}, by batch {step}", lr)


def check_record(record: dict[str, Any], prefix: str = "") -> None:
    """Stop at an epoch whose metrics are not finite (finite losses whose weights overflowed, for one)."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _diverged(key, value, f"at the end of {prefix}epoch {record.get('epoch')}", record.get("lr", 0.0))
