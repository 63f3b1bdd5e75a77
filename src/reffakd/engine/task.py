"""What the training loop trains: a *task*, so one loop serves every student and the autoencoder.

``engine.fit`` knows nothing of students, soft-target sources or autoencoders. A task hands it

* the trainable module: its parameters are optimised, its weights go into ``last``/``best`` and
  the resume checkpoint, its batch norm is synchronised and it is what DistributedDataParallel wraps;
* one training step: outputs, named losses (summed into the loss that is minimised, each logged as
  ``train_<name>``) and per-batch counts the epoch record needs (correct predictions for train top-1);
* its evaluation (sums over the batches, so ranks holding shards can add them up) and the
  validation number that selects ``best`` (``Selection``: val top-1 higher, val MSE lower...);
* state outside the module that a resume must restore (a distiller's own buffers, a teacher's
  forward time, the state of sources that learn while the student does);
* how to put a DistributedDataParallel wrapper in place of the module for the training steps.

A batch may carry more than (images, labels): the loop passes the rest on to ``training_step`` (the
images' indices in their split, which per-image sources need). A task may define ``end_epoch(epoch)``,
called on every rank after an epoch's last step and before its checkpoint (a source that learns per
epoch updates, and reduces over the ranks, there); ``extra_state`` is also called on every rank.

``distillers.Distiller`` is the task of a student, ``softlabels.AutoencoderTask`` the task of the
autoencoder. The loop only ever calls what ``Task`` lists.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .speed import SpeedOptions

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Selection:
    """The validation number that picks the ``best`` checkpoint: a key of the epoch record and its direction."""

    key: str
    higher_is_better: bool = True

    def better(self, value: float, best: float | None) -> bool:
        """``value`` beats ``best`` (``None``: nothing yet); a NaN never does."""
        if math.isnan(value):
            return False
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


@dataclass
class Step:
    """What one training step returns.

    ``losses``: named scalar losses; the loop minimises their sum and logs each as ``train_<name>``
    (means over the epoch). ``counts``: per-batch sums the epoch record needs (e.g. ``correct``), numbers
    or 0-dim device tensors (kept on the device: the loop reads them once an epoch), added up over the
    epoch and the ranks and turned into record fields by ``Task.train_metrics``.
    """

    outputs: torch.Tensor
    losses: dict[str, torch.Tensor]
    counts: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """What ``engine.fit`` trains (see the module docstring)."""

    selection: Selection  # the validation number that chooses ``best``
    log_prefix: str  # before "epoch" in the log lines and progress bar ("" for a student, "autoencoder ")
    checkpoint_keys: tuple[str, ...]  # epoch-record keys added to the metadata of ``last`` and ``best``

    def trainable(self) -> nn.Module:
        """The module being trained, never a DistributedDataParallel wrapper."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Training mode for the module (and whatever else the task holds)."""
        ...

    def training_step(self, images: torch.Tensor, targets: torch.Tensor, progress: float) -> Step:
        """Forward one batch; ``progress``: training progress in epochs at the end of this step."""
        ...

    def cuda_graph_blocker(self) -> str | None:
        """Why ``training_step`` cannot be recorded as a CUDA graph and replayed (it does host work each step, or
        depends on the step's ``progress`` within an epoch); None: it is device work alone (``engine.cudagraph``)."""
        ...

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        """Record fields (``train_`` is prefixed) from an epoch's summed ``Step.counts`` over ``seen`` images."""
        ...

    def evaluate(self, batches: Batches, speed: SpeedOptions, device: torch.device) -> dict[str, float]:
        """Sums over ``batches`` with the unwrapped module in eval mode; ``images`` among them."""
        ...

    def val_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Means from ``evaluate``'s sums (summed over ranks), ``images`` kept: ``val_<key>`` in the record."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """State outside the module to save in the resume checkpoint: tensors, numbers, strings, nested."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""
        ...

    def ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> AbstractContextManager[None]:
        """While active, training steps run through ``wrap(module)`` (DistributedDataParallel)."""
        ...

    def epoch_summary(self, record: dict[str, Any], best: float | None) -> str:
        """The middle of an epoch's log line: losses and scores of ``record``, the best so far."""
        ...


def unwrapped(module: nn.Module) -> nn.Module:
    """The module a DistributedDataParallel wrapper holds, or the module itself."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


@contextlib.contextmanager
def wrapped(owner: object, attr: str, wrap: Callable[[nn.Module], nn.Module]) -> Iterator[None]:
    """``owner.<attr>`` replaced by ``wrap(owner.<attr>)`` for the block, restored after: how a task's ``ddp``
    puts the DistributedDataParallel wrapper in place for its training steps."""
    module = getattr(owner, attr)
    setattr(owner, attr, wrap(module))
    try:
        yield
    finally:
        setattr(owner, attr, module)
