"""Where soft targets come from: one interface, so every method works with every source.

A source maps a batch (images, labels) to a target distribution over the classes at the loss
temperature T. Network sources (a trained teacher, or a trained student as its own Tf-KD teacher)
run a frozen forward pass and count its time; table sources (autoencoder soft labels, a Tf-KD
virtual teacher, uniform) are one row lookup per image.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ReffAKDError
from ..resources import combine_stages

if TYPE_CHECKING:
    from ..softlabels.artifact import SoftLabels


def target_dtype(images: torch.Tensor | None, *tensors: torch.Tensor) -> torch.dtype:
    """float64 targets for float64 images or tables, else float32: a float64 run keeps float64 from end to end."""
    wide = images is not None and images.dtype == torch.float64
    return torch.float64 if wide or any(t.dtype == torch.float64 for t in tensors) else torch.float32


class SoftTargetSource(nn.Module):
    """Base class: ``probabilities(images, labels, T)`` gives the (B, C) target distribution."""

    #: Forward FLOPs per image spent producing targets during distillation (0 for a table lookup).
    forward_flops_per_image: int = 0

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.seconds = 0.0  # wall time spent in ``probabilities`` (network sources only)

    def probabilities(
        self, images: torch.Tensor, labels: torch.Tensor, temperature: float, **batch: Any
    ) -> torch.Tensor:
        """``batch``: what the batch carries beyond (images, labels), for the sources that need it:
        ``index`` (each image's index in its split) and ``partners`` (each image's same-class partner)."""
        raise NotImplementedError

    # What a source that learns during training overrides (``sources.online``); a fixed source does nothing.
    needs_index = False  # probabilities need ``index``
    needs_partners = False  # probabilities need ``partners`` (the batches must pair images)

    def observe(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None) -> None:
        """After each training step: the step's detached logits, labels and split indices."""

    def end_epoch(self, epoch: int) -> None:
        """After each epoch's last step, on every rank (a learning source reduces over the ranks here)."""

    def cuda_graph_blocker(self) -> str | None:
        """Why a replayed CUDA graph of the training step would skip part of this source's work; None: its
        ``probabilities`` and ``observe`` are device work alone (a table lookup)."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """State to keep in the resume checkpoint (called on every rank)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore ``extra_state``."""

    def describe(self) -> dict[str, Any]:
        return {"source": type(self).__name__}

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        """What this run's soft targets cost, in the ledger's shape (``combine_stages``); ``None``: unknown.

        ``images_seen``: training images the student saw (a network source ran once per image);
        ``peak_memory_bytes``: the training loop's peak, which a source used inside it shares.
        """
        return combine_stages({}, source=self.describe()["source"])


class ClassTable(SoftTargetSource):
    """A fixed (C, C) table, row y the target of class y.

    ``as_logits=False``: the rows are probabilities used as stored (autoencoder soft labels: T softens
    only the student). ``as_logits=True``: each row is softened as softmax(row / T), the way Tf-KD's
    release softens its virtual teacher. Targets are float64 for float64 images (a float64 run) and, with
    ``float64_out`` (default: the table is float64), always; float32 otherwise.
    """

    def __init__(
        self,
        table: torch.Tensor,
        *,
        as_logits: bool = False,
        name: str = "table",
        made_by: dict[str, Any] | None = None,
        made_cost: dict[str, Any] | None = None,
        shape: dict[str, Any] | None = None,
        float64_out: bool | None = None,
    ) -> None:
        if table.ndim != 2 or table.shape[0] != table.shape[1]:
            raise ReffAKDError(f"a class table must be square (C, C), got shape {tuple(table.shape)}")
        super().__init__(int(table.shape[0]))
        # Kept in float64 (C x C is small): a float64 run's targets are float64 from the formula on (a float32
        # copy rounded Tf-KD's virtual teacher before softening it at T).
        self.wide = table.dtype == torch.float64 if float64_out is None else float64_out
        self.register_buffer("table", table.detach().to(torch.float64).clone())
        self.as_logits = as_logits
        self.name = name
        # A table made by an earlier stage (the autoencoder's soft labels) carries that stage's ledger:
        # ``made_by`` says what made it; ``made_cost`` is its cost record, None when unknown.
        self.made_by = made_by
        self.made_cost = made_cost
        # How its mass and structure were set (``softlabels.structure``), recorded in the run's summary; None: as made.
        self.shape = shape

    def probabilities(
        self, images: torch.Tensor, labels: torch.Tensor, temperature: float, **batch: Any
    ) -> torch.Tensor:
        dtype = torch.float64 if self.wide else target_dtype(images)
        rows = self.table[labels].to(dtype)  # float32 runs: softened in float32 as before
        return F.softmax(rows / temperature, dim=1) if self.as_logits else rows

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "table_as_logits": self.as_logits, **(self.shape or {})}

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        """A lookup costs nothing during training; a table made by an earlier stage costs what that stage did."""
        if self.made_by is not None:
            return self.made_cost
        return super().cost(images_seen, peak_memory_bytes)


def soft_label_table(soft_labels: SoftLabels) -> ClassTable:
    """The autoencoder soft labels (AESL) as a source: rows used as stored, with the artifact's own cost; a placebo
    artifact's structure is recorded in the run's summary."""
    structure = soft_labels.metadata.get("structure", "similarity")
    return ClassTable(
        soft_labels.matrix, name="aesl", made_by={"soft_labels": soft_labels.metadata.get("config")},
        made_cost=soft_labels.cost, shape=None if structure == "similarity" else {"structure": structure},
    )  # fmt: skip


class InstanceTable(SoftTargetSource):
    """A fixed (N, C) table, row i the target of training image i (per-image soft labels), used as stored."""

    needs_index = True

    def __init__(self, table: torch.Tensor, *, name: str, made_cost: dict[str, Any] | None = None) -> None:
        super().__init__(int(table.shape[1]))
        self.register_buffer("table", table.detach().to(torch.float32).clone())
        self.name = name
        self.made_cost = made_cost

    def probabilities(
        self, images: torch.Tensor, labels: torch.Tensor, temperature: float, **batch: Any
    ) -> torch.Tensor:
        index = batch.get("index")
        if index is None:
            raise ReffAKDError(f"{self.name} needs each image's index in its split: batches made with indexed=True")
        return self.table[index].to(target_dtype(images))

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "images": int(self.table.shape[0])}

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        """Made by the soft-label stage (its cost); a lookup during training."""
        return self.made_cost


def instance_soft_label_source(soft_labels: SoftLabels | None, split_fingerprint: str | None) -> InstanceTable:
    """The per-image autoencoder soft labels as a source; refused in one line when made on another split."""
    if soft_labels is None:
        raise ReffAKDError("per-image soft labels need soft labels (soft_labels PATH, made by `reffakd softlabels`)")
    n = int(soft_labels.instance_index.numel()) if soft_labels.instance_index is not None else 0
    table = soft_labels.instance_table(split_fingerprint, n)
    return InstanceTable(table, name="aesl-instance", made_cost=soft_labels.cost)


def virtual_teacher_table(num_classes: int, own_probability: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Tf-KD-reg's hand-made teacher: ``a`` on the true class, (1 - a) / (C - 1) on each other."""
    if not 0.0 < own_probability < 1.0:
        raise ReffAKDError(
            f"virtual teacher own-class probability {own_probability} is out of range: it must lie in (0, 1)"
        )
    table = torch.full((num_classes, num_classes), (1.0 - own_probability) / (num_classes - 1), dtype=dtype)
    table.fill_diagonal_(own_probability)
    return table


def uniform_table(num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full((num_classes, num_classes), 1.0 / num_classes, dtype=dtype)


class TeacherNetwork(SoftTargetSource):
    """A frozen network in eval mode: targets are softmax(teacher(x) / T).

    It stays in eval mode when the distiller is put in training mode (its batch-norm statistics never
    move), takes no gradients, and re-normalises the batch when it was trained with other channel
    statistics than the student's.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        forward_flops_per_image: int,
        name: str = "teacher",
        input_stats: tuple[Sequence[float], Sequence[float]] | None = None,
        teacher_stats: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__(num_classes)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.forward_flops_per_image = int(forward_flops_per_image)
        self.name = name
        self.info: Any = None  # a ``TeacherInfo`` when loaded from a checkpoint (``load_teacher``)
        self.renormalise = (
            input_stats is not None
            and teacher_stats is not None
            and (
                [float(v) for v in input_stats[0]] != [float(v) for v in teacher_stats[0]]
                or [float(v) for v in input_stats[1]] != [float(v) for v in teacher_stats[1]]
            )
        )
        if self.renormalise:
            assert input_stats is not None and teacher_stats is not None
            view = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
            # x_teacher = (x * std_in + mean_in - mean_t) / std_t = x * scale + shift
            scale = view(input_stats[1]) / view(teacher_stats[1])
            shift = (view(input_stats[0]) - view(teacher_stats[0])) / view(teacher_stats[1])
            self.register_buffer("scale", scale)
            self.register_buffer("shift", shift)

    def fingerprint(self) -> str:
        """A hash of the network's weights and buffers: part of a student run's identity, so that a run is never
        resumed with another teacher."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def train(self, mode: bool = True) -> TeacherNetwork:
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            images = images * self.scale + self.shift
        return self.model(images)

    def probabilities(
        self, images: torch.Tensor, labels: torch.Tensor, temperature: float, **batch: Any
    ) -> torch.Tensor:
        if images.is_cuda:  # CUDA events: timed on the device, read when ``seconds`` is (no sync per step)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            probs = self._softmax(self.logits(images), temperature)
            end.record()
            self._pending.append((start, end))
            return probs
        began = time.perf_counter()
        probs = self._softmax(self.logits(images), temperature)
        self._seconds += time.perf_counter() - began
        return probs

    def cuda_graph_blocker(self) -> str | None:
        return "the teacher's forward passes are timed step by step for the cost ledger"

    @staticmethod
    def _softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """softmax(z / T) in float64 for float64 logits, else in float32 (half-precision logits included)."""
        return F.softmax(logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32) / temperature, 1)

    @property
    def seconds(self) -> float:  # type: ignore[override]
        """Time spent in the forward passes so far; reading it waits for the recorded CUDA events (once an epoch)."""
        pending = self.__dict__.setdefault("_pending", [])
        if pending:
            pending[-1][1].synchronize()
            self._seconds += sum(start.elapsed_time(end) for start, end in pending) / 1000.0
            pending.clear()
        return self.__dict__.get("_seconds", 0.0)

    @seconds.setter
    def seconds(self, value: float) -> None:
        self.__dict__["_pending"] = []
        self.__dict__["_seconds"] = float(value)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "forward_flops_per_image": self.forward_flops_per_image}

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        """A teacher's soft targets cost its own training run plus its forward passes during distillation."""
        info = self.info
        stages: dict[str, dict[str, Any]] = {}
        if info is not None and info.training_cost is not None:
            t = info.training_cost
            stages["teacher_training"] = {
                "name": "teacher_training", "seconds": t["seconds"], "flops": t["flops"],
                "peak_memory_bytes": t.get("peak_memory_bytes"), "details": {"checkpoint": info.path},
            }  # fmt: skip
        stages["teacher_forward"] = {
            "name": "teacher_forward", "seconds": self.seconds, "flops": self.forward_flops_per_image * images_seen,
            "peak_memory_bytes": peak_memory_bytes, "details": {"images": images_seen},
        }  # fmt: skip
        return combine_stages(
            stages, source=self.name, teacher=info.to_dict() if info is not None else None,
            teacher_training_cost_known=info is not None and info.training_cost is not None,
        )  # fmt: skip
