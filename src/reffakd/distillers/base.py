"""Distillers: one class per method, mdistiller-style (the registry of methods is ``registry``).

A distiller wraps the student and returns ``(logits, {name: weighted loss})``; the training engine
sums the dict, logs every entry, and never knows which method it runs. A distiller that learns
from soft targets holds a ``source`` (``reffakd.sources``) and never cares which kind it is.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine.metrics import accuracy, evaluate_counts
from ..engine.task import Batches, Selection, Step, unwrapped, wrapped

if TYPE_CHECKING:
    from ..engine.speed import SpeedOptions
    from ..sources import SoftTargetSource


class Distiller(nn.Module):
    """Base: plain cross-entropy on the student; subclasses add their soft-target terms.

    A distiller is the ``engine.Task`` of its student: the loop trains ``trainable()`` (the student)
    through ``training_step`` (``forward_train`` plus the correct predictions for train top-1) and
    selects ``best`` on validation top-1. Its own buffers and the source's forward time are the
    state it saves beside the student's weights.
    """

    selection = Selection("val_top1", higher_is_better=True)
    log_prefix = ""
    checkpoint_keys = ("val_top1", "val_top5")

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.source: SoftTargetSource | None = None  # where the soft targets come from, if any
        # What the current training step's batch carries beyond (images, labels), for the source.
        self._batch: dict[str, torch.Tensor | None] = {}

    @property
    def pairs(self) -> bool:
        """The batches must append a same-class partner to each image (CS-KD's source)."""
        return self.source is not None and self.source.needs_partners

    def soft_targets(self, images: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        """The source's targets for this batch, given what the batch carries (its indices, its partners)."""
        assert self.source is not None
        return self.source.probabilities(images, targets, temperature, **self._batch)

    def forward_train(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``epoch``: training progress in epochs at the end of this step.

        Step s of S in epoch e: e - 1 + (s + 1) / S.
        """
        logits = self.student(images)
        return logits, {"ce": F.cross_entropy(logits, targets)}

    def describe(self) -> dict[str, Any]:
        return {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images)

    # ------------------------------------------------------------------ engine.Task

    def trainable(self) -> nn.Module:
        return unwrapped(self.student)

    def training_step(
        self, images: torch.Tensor, targets: torch.Tensor, progress: float, index: torch.Tensor | None = None
    ) -> Step:
        """One step; ``index``: the images' indices in their split. A paired batch (``pairs``) holds the b
        images, then their b partners; the partners go to the source, not through the loss."""
        partners = None
        if self.pairs:
            b = targets.shape[0]
            images, partners = images[:b], images[b:]
        self._batch = {"index": index, "partners": partners}
        try:
            logits, losses = self.forward_train(images, targets, progress)
        finally:
            self._batch = {}
        if self.source is not None:
            self.source.observe(logits.detach(), targets, index)  # the step hook of a source that learns
        return Step(logits, losses, {"correct": (logits.detach().argmax(1) == targets).sum()})  # read at epoch end

    def cuda_graph_blocker(self) -> str | None:
        """A student's own step is device work; a source may add host work (``SoftTargetSource``)."""
        return self.source.cuda_graph_blocker() if self.source is not None else None

    def end_epoch(self, epoch: int) -> None:
        """The epoch hook (``engine.task``): a source that learns per epoch updates here."""
        if self.source is not None:
            self.source.end_epoch(epoch)

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        return {"top1": 100.0 * counts.get("correct", 0) / seen}

    def evaluate(self, batches: Batches, speed: SpeedOptions, device: torch.device) -> dict[str, float]:
        return evaluate_counts(
            self.trainable(),
            batches,
            prepare=speed.prepare_input if speed.channels_last else None,
            autocast=(lambda: speed.autocast(device)) if speed.amp != "none" else None,
        )

    def val_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return accuracy(sums)

    def extra_state(self) -> dict[str, Any]:
        """The distiller's own parameters and buffers (beside the student's and the source's), the source's time."""
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(("student.", "source."))}
        source = self.source.extra_state() if self.source is not None else {}
        return {"own": own, "source_seconds": getattr(self.source, "seconds", None), "source": source}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("own"):
            self.load_state_dict({**self.state_dict(), **state["own"]})
        if state.get("source") and self.source is not None:
            self.source.load_extra_state(state["source"])
        seconds = state.get("source_seconds")
        if seconds is not None and self.source is not None and hasattr(self.source, "seconds"):
            self.source.seconds = seconds

    def ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> AbstractContextManager[None]:
        return wrapped(self, "student", wrap)

    def epoch_summary(self, record: dict[str, Any], best: float | None) -> str:
        return (
            f"loss {record['train_loss']:.4f}  train {record['train_top1']:.2f}%  "
            f"val {record['val_top1']:.2f}% (best {best:.2f}% @ {record['best_epoch']})"
        )
