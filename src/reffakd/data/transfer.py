"""Small host tensors (a batch's random draws, its pair indices) sent to the training device without a host sync."""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without waiting for it. A blocking copy to a GPU first waits for all the work queued there,
    so one per batch makes the host and the GPU take turns. On CUDA the tensor is pinned, then copied asynchronously
    (pinned memory stays valid until the copy has run); elsewhere it is an ordinary copy (none on the CPU)."""
    if t.device == device:
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def copy_into(buffer: torch.Tensor, t: torch.Tensor) -> None:
    """``buffer.copy_(t)``, from the host to a GPU as ``to_device`` sends: pinned, without waiting (a recorded CUDA
    graph's fixed input buffers are refilled this way each batch)."""
    if t.device.type == "cpu" and buffer.device.type == "cuda":
        buffer.copy_(t.pin_memory(), non_blocking=True)
    else:
        buffer.copy_(t)
