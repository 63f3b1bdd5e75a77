"""Measure a stage: wall time, peak memory, and the FLOPs its caller adds up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .memory import peak_memory_bytes, reset_peak_memory


@dataclass
class StageCost:
    """What one stage (autoencoder training, embedding, student training...) cost."""

    name: str
    seconds: float = 0.0
    flops: int = 0
    peak_memory_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def measure(name: str, device: torch.device) -> Iterator[StageCost]:
    """Time the block and record its peak memory; the block fills in ``flops`` and ``details``."""
    cost = StageCost(name)
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield cost
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cost.seconds = time.perf_counter() - start
    cost.peak_memory_bytes = peak_memory_bytes(device)


def combine_stages(stages: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One cost record from named stages: their sum of seconds and FLOPs, the largest peak memory.

    The shape every producer of soft targets writes (``soft_labels_cost.json``, a teacher's ledger),
    so a run's summary can set any of them beside the student's own cost.
    """
    peaks = [s.get("peak_memory_bytes") or 0 for s in stages.values()]
    return {
        "stages": stages,
        "seconds": sum(float(s.get("seconds") or 0.0) for s in stages.values()),
        "flops": sum(int(s.get("flops") or 0) for s in stages.values()),
        "peak_memory_bytes": max(peaks, default=0) or None,
        **extra,
    }
