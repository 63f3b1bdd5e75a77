"""Top-k accuracy and evaluation over a loader."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F

COUNT_KEYS = ("correct1", "correct5", "loss_sum", "images")


@torch.no_grad()
def evaluate_counts(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], AbstractContextManager[object]] | None = None,
) -> dict[str, float]:
    """Sums, not means (hits at 1 and 5, summed cross-entropy, images): ranks holding shards add them up."""
    was_training = model.training
    model.eval()
    # Hits at 1 and 5 and the summed loss stay on the device, read once after the last batch: a read per batch
    # would wait for the GPU each time. float64 holds the counts exactly and adds the per-batch float32 loss
    # sums as Python floats would: the same numbers.
    totals: torch.Tensor | None = None
    n = 0
    for images, labels in batches:
        if prepare is not None:
            images = prepare(images)
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(images)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        batch = torch.stack([hits[:, 0].sum().double(), hits.any(dim=1).sum().double(), loss.double()])
        totals = batch if totals is None else totals + batch
        n += labels.shape[0]
    model.train(was_training)
    correct1, correct5, loss_sum = totals.tolist() if totals is not None else (0, 0, 0.0)
    return {"correct1": int(correct1), "correct5": int(correct5), "loss_sum": loss_sum, "images": n}


def accuracy(counts: dict[str, float]) -> dict[str, float]:
    """Top-1, top-5 (top-C when C < 5) accuracy in percent and mean cross-entropy."""
    n = counts["images"]
    return {
        "top1": 100.0 * counts["correct1"] / n,
        "top5": 100.0 * counts["correct5"] / n,
        "loss": counts["loss_sum"] / n,
        "images": int(n),
    }


def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Top-1, top-5 (top-C when C < 5) accuracy in percent and mean cross-entropy."""
    return accuracy(evaluate_counts(model, batches))
