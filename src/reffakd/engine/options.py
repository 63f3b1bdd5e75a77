"""What travels from a command to the training loop, as one object (``TrainOptions``).

A command (or a script) decides how networks are trained once: the device, the speed options, the logging, resume,
torchrun's batch-norm choice. ``pipeline.train_student``, ``softlabels.build_soft_labels`` and ``fit`` take that
object instead of a dozen keyword arguments each, so an option added here reaches every loop without an edit of
their signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from . import distributed
from .speed import SpeedOptions

Resume = bool | str | os.PathLike[str]


def _quiet(line: str) -> None:
    """The log of a rank other than 0: rank 0 alone logs."""


@dataclass(frozen=True)
class TrainOptions:
    """How a network is trained, beside what is trained and on which data.

    ``device``: where ``train_student`` and ``build_soft_labels`` build the networks and batches (``fit`` trains where
    the task's module is). Under torchrun it is this rank's device: the entry joins the process group once, before
    anything is built (``TrainOptions(device=distributed.setup(device))``), and every loop after it finds the group
    up. ``speed``: ``SpeedOptions``. ``progress``: progress bars; ``log``: one line per event. ``resume``: True
    continues from the resume checkpoint in the run folder when there is one (else starts afresh), a path (a run
    folder or its checkpoint file) from there. ``tensorboard``: mirror the metrics to ``run_dir/tensorboard``.
    ``sync_batchnorm``: under torchrun, batch-norm statistics over the global batch (N ranks train as one process
    would). ``handle_signals``: stop cleanly on SIGINT/SIGTERM (main thread only).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    speed: SpeedOptions = SpeedOptions()
    progress: bool = True
    log: Callable[[str], None] = print
    resume: Resume = False
    tensorboard: bool = False
    sync_batchnorm: bool = True
    handle_signals: bool = True

    def on_this_rank(self) -> TrainOptions:
        """These options on rank 0 (or in one process); on any other rank, without progress bars or log lines."""
        return self if distributed.is_main_process() else replace(self, progress=False, log=_quiet)
