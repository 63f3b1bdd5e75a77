"""Peak memory of a stage: resident set high-water mark on CPU, allocator peak on CUDA.

tracemalloc misses tensor storage, so on CPU the kernel's ``VmHWM`` is read and reset through
``/proc/self/clear_refs`` (Linux); elsewhere the peak is reported as unknown (None).
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int | None:
    """CUDA: ``max_memory_allocated``; CPU: ``VmHWM`` (peak resident set of the whole process)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
