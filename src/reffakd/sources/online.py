"""Sources that learn while the student trains: OLS's class table, PS-KD's previous predictions, CS-KD's partners.

Each one is a ``SoftTargetSource`` that also *observes* the student: after each training step the
distiller hands it the step's (detached) logits, labels and split indices (``observe``), and after
each epoch it updates (``end_epoch``). Its state is in ``extra_state`` (saved in the resume checkpoint,
mid-epoch included) and, under torchrun, is summed over the ranks at the end of each epoch, and when
a checkpoint is written mid-epoch, so N processes hold what one process would.

* ``OnlineClassTable`` (OLS, Zhang et al. 2021): during epoch t, the mean predicted distribution of the
  training images of class y that the student classifies correctly is accumulated; normalised per
  class, it is the soft target of class y during epoch t + 1; a class with no correct prediction in epoch t
  gets the uniform row 1/C, as the releases set it. During the first epoch the table is all zeros (as in the
  CIFAR release): the soft term contributes nothing.
* ``PreviousPredictions`` (PS-KD, Kim et al. 2021): the target of image i in epoch t is
  (1 - a_t) onehot(y_i) + a_t p_{t-1}(x_i), a_t = a_T * t / T, p_{t-1} the softmax the student gave
  image i in its training step of the previous epoch (one-hot before the image was first seen).
* ``PartnerPredictions`` (CS-KD, Yun et al. 2020): the target of an image is the student's softened
  prediction, without gradient, on its partner (another image of its class, drawn by the batch pipeline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..engine import distributed
from ..errors import ReffAKDError
from ..resources import combine_stages
from .base import SoftTargetSource, target_dtype


def _online_cost(name: str, seconds: float, flops: int, memory: int, **details: Any) -> dict[str, Any]:
    """The ledger record of a source computed inside the training loop: its time, FLOPs and memory (its state's)."""
    stage = {
        "name": f"{name}_online", "seconds": seconds, "flops": int(flops), "peak_memory_bytes": memory,
        "details": {"state_bytes" if "partner_images" not in details else "shared_peak_bytes": memory, **details},
    }  # fmt: skip
    return combine_stages({stage["name"]: stage}, source=name)


def _tensor_bytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class LearningSource(SoftTargetSource):
    """A source with state that the training steps update: its time and FLOPs are counted for the ledger."""

    name = "learning"
    needs_index = False
    needs_partners = False

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.flops = 0  # FLOPs spent producing and updating targets

    def _timed(self, start: float) -> None:
        self.seconds += time.perf_counter() - start

    def cuda_graph_blocker(self) -> str | None:
        return f"{self.name} keeps host-side time and FLOP counts of its updates step by step for the cost ledger"

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the source's state (``extra_state`` saves them, ``load_extra_state`` restores them)."""
        return {}

    def running_keys(self) -> tuple[str, ...]:
        """The tensors holding this epoch's accumulation so far: summed over the ranks when saved mid-epoch."""
        return ()

    def extra_state(self) -> dict[str, Any]:
        """The state, its running part summed over the ranks (every rank calls it; rank 0 saves it)."""
        state = {k: v.detach().clone() for k, v in self.state_tensors().items()}
        for k in self.running_keys():
            state[k] = distributed.all_reduce_tensor(state[k])
        return {"tensors": state, "seconds": self.seconds, "flops": self.flops}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore ``extra_state``; under torchrun only rank 0 keeps the running sums (they are summed again later)."""
        mine = self.state_tensors()
        saved = state.get("tensors", {})
        if set(saved) != set(mine):
            raise ReffAKDError(
                f"the resume checkpoint's {self.name} state has {sorted(saved)}, expected {sorted(mine)}; "
                "resume with the same method"
            )
        for k, t in mine.items():
            if tuple(saved[k].shape) != tuple(t.shape):
                raise ReffAKDError(
                    f"the resume checkpoint's {self.name} state {k} has shape {tuple(saved[k].shape)}, "
                    f"this run {tuple(t.shape)}; resume on the same data"
                )
            if saved[k].dtype == torch.float64 and t.dtype == torch.float32:  # a float64 run's state stays float64
                setattr(self, k, t.to(torch.float64))
                t = getattr(self, k)
            t.copy_(saved[k])
            if k in self.running_keys() and distributed.rank() != 0:
                t.zero_()
        self.seconds = float(state.get("seconds", 0.0))
        self.flops = int(state.get("flops", 0))

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        return _online_cost(self.name, self.seconds, self.flops, _tensor_bytes(*self.state_tensors().values()))


class OnlineClassTable(LearningSource):
    """OLS: a (C, C) table learned from the student's correct predictions of the previous epoch."""

    name = "ols"

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        c = num_classes
        # The targets in use (zeros during the first epoch), float64 so a float64 run's targets are float64.
        self.register_buffer("table", torch.zeros(c, c, dtype=torch.float64))
        self.register_buffer("sums", torch.zeros(c, c, dtype=torch.float64))  # this epoch's correct predictions
        self.register_buffer("counts", torch.zeros(c, dtype=torch.float64))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"table": self.table, "sums": self.sums, "counts": self.counts}

    def running_keys(self) -> tuple[str, ...]:
        return ("sums", "counts")

    def probabilities(
        self, images: torch.Tensor, labels: torch.Tensor, temperature: float, **batch: Any
    ) -> torch.Tensor:
        return self.table[labels].to(target_dtype(images))

    @torch.no_grad()
    def observe(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None) -> None:
        start = time.perf_counter()
        p = F.softmax(logits.double(), dim=1)
        correct = (p.argmax(1) == labels).to(p.dtype)  # a weight, not a mask: selecting rows would wait for a GPU
        self.sums.index_add_(0, labels, p * correct[:, None])  # adding exact zeros leaves the sums as they were
        self.counts.index_add_(0, labels, correct)
        self.flops += 4 * logits.numel()  # softmax (exp, sum, divide) and the accumulation
        self._timed(start)

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        """table[y] = mean of the correct predictions of class y, normalised; uniform for a class never right."""
        start = time.perf_counter()
        sums, counts = distributed.all_reduce_tensor(self.sums), distributed.all_reduce_tensor(self.counts)
        self.table.copy_(ols_table(sums, counts))
        self.sums.zero_()
        self.counts.zero_()
        self.flops += 3 * self.table.numel()
        self._timed(start)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name}


def ols_table(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """OLS's update: each class's mean correct prediction, normalised to sum 1; the uniform row 1/C for a class with
    none (the releases' ``loss_lams[cls] = 1 / num_classes``: a zero row would leave its images no soft term)."""
    mean = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], torch.zeros_like(sums))
    norm = mean.sum(1, keepdim=True)
    uniform = torch.full_like(mean, 1.0 / mean.shape[1])
    return torch.where(norm > 0, mean / norm.clamp_min(torch.finfo(mean.dtype).tiny), uniform)


class PreviousPredictions(LearningSource):
    """PS-KD: each training image's target mixes its label with the student's prediction for it one epoch before."""

    name = "ps-kd"
    needs_index = True

    def __init__(self, num_samples: int, num_classes: int, final_alpha: float, total_epochs: int) -> None:
        super().__init__(num_classes)
        if num_samples < 1:
            raise ReffAKDError(f"ps-kd needs the number of training images, got {num_samples}")
        n, c = num_samples, num_classes
        self.final_alpha, self.total_epochs = float(final_alpha), int(total_epochs)
        # p_{t-1}(x_i), valid where ``has_previous``; float32, or float64 once float64 logits are observed.
        self.register_buffer("previous", torch.zeros(n, c))
        self.register_buffer("has_previous", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("current", torch.zeros(n, c))  # this epoch's predictions so far
        self.register_buffer(
            "seen", torch.zeros(n, dtype=torch.uint8)
        )  # 1: trained on this epoch (uint8: gloo sums it)
        self.register_buffer("epoch", torch.ones((), dtype=torch.long))  # the epoch being trained, from 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "previous": self.previous, "has_previous": self.has_previous, "current": self.current,
            "seen": self.seen, "epoch": self.epoch,
        }  # fmt: skip

    def running_keys(self) -> tuple[str, ...]:
        return ("current", "seen")

    def alpha_at(self, epoch: int) -> float:
        """a_t = a_T * t / T (the release's alpha_T * (epoch + 1) / end_epoch with 0-based epochs)."""
        return self.final_alpha * min(epoch, self.total_epochs) / self.total_epochs

    def probabilities(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        temperature: float,
        *,
        index: torch.Tensor | None = None,
        **batch: Any,
    ) -> torch.Tensor:
        if index is None:
            raise ReffAKDError("ps-kd needs each image's index in its split: batches made with indexed=True")
        start = time.perf_counter()
        a = self.alpha_at(int(self.epoch))
        onehot = F.one_hot(labels, self.num_classes).to(self.previous.dtype)
        prev = torch.where(self.has_previous[index][:, None], self.previous[index], onehot)
        out = ((1.0 - a) * onehot + a * prev).to(target_dtype(images, self.previous))
        self.flops += 3 * out.numel()
        self._timed(start)
        return out

    @torch.no_grad()
    def observe(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None) -> None:
        if index is None:
            raise ReffAKDError("ps-kd needs each image's index in its split: batches made with indexed=True")
        start = time.perf_counter()
        if logits.dtype == torch.float64 and self.current.dtype != torch.float64:  # float64 in, float64 out
            self.previous, self.current = self.previous.double(), self.current.double()
        self.current[index] = F.softmax(logits.to(self.current.dtype), dim=1)
        self.seen[index] = 1
        self.flops += 3 * logits.numel()
        self._timed(start)

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        """The predictions of this epoch become the previous ones (each image's row from the rank that trained it)."""
        start = time.perf_counter()
        current = distributed.all_reduce_tensor(self.current * self.seen[:, None])
        seen = distributed.all_reduce_tensor(self.seen) > 0
        self.previous[seen] = current[seen]
        self.has_previous |= seen
        self.current.zero_()
        self.seen.zero_()
        self.epoch += 1
        self._timed(start)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "final_alpha": self.final_alpha}


class PartnerPredictions(LearningSource):
    """CS-KD: softmax(student(partner) / T), without gradient, for each image's same-class partner."""

    name = "cs-kd"
    needs_partners = True

    def __init__(self, num_classes: int, forward_flops_per_image: int = 0) -> None:
        super().__init__(num_classes)
        self.forward_flops_per_image = int(forward_flops_per_image)
        self._model: Callable[[], Callable[[torch.Tensor], torch.Tensor]] | None = None

    def attach(self, model: Callable[[], Callable[[torch.Tensor], torch.Tensor]]) -> None:
        """``model()`` gives the student as it trains (the DistributedDataParallel wrapper under torchrun)."""
        self._model = model

    def probabilities(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        temperature: float,
        *,
        partners: torch.Tensor | None = None,
        **batch: Any,
    ) -> torch.Tensor:
        if partners is None or self._model is None:
            raise ReffAKDError("cs-kd needs each image's same-class partner: batches made with pairs=True")
        start = time.perf_counter()
        with torch.no_grad():
            z = self._model()(partners)
            out = F.softmax(z.to(torch.float64 if z.dtype == torch.float64 else torch.float32) / temperature, dim=1)
        self.flops += self.forward_flops_per_image * partners.shape[0]
        self._timed(start)
        return out

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "forward_flops_per_image": self.forward_flops_per_image}

    def cost(self, images_seen: int, peak_memory_bytes: int | None = None) -> dict[str, Any] | None:
        """The partners' forward passes: their FLOPs and time; no state, the training loop's peak memory (shared)."""
        return _online_cost(self.name, self.seconds, self.flops, peak_memory_bytes or 0, partner_images=images_seen)
