"""Top-k accuracy and evaluation over a loader."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Top-1, top-5 (top-C when C < 5) accuracy in percent and mean cross-entropy."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = 0
    loss_sum = 0.0
    n = 0
    for images, labels in batches:
        logits = model(images)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        loss_sum += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        n += labels.shape[0]
    model.train(was_training)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n, "images": n}
