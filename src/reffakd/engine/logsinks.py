"""Optional TensorBoard mirror of ``metrics.jsonl``.

The JSON lines stay the source of truth (reports and ``reffakd compare`` read them); TensorBoard is
a live view for those who have it installed, so it is never a dependency.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import ReffAKDError

TENSORBOARD_DIR = "tensorboard"


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        # The package as "TensorBoard": the CLI writes the parameter named here (lower case) as its flag.
        raise ReffAKDError(
            "tensorboard needs the TensorBoard package (pip install TensorBoard); metrics.jsonl holds the same numbers",
            params=("tensorboard",),
        )


class TensorBoardSink:
    """Each epoch's numbers as scalars (``train/loss``, ``val/top1``, ``lr``...) against the epoch.

    ``purge_step``: on resume, the first epoch to (re)write, so events an interrupted session wrote
    for later epochs are dropped and no epoch appears twice.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict[str, Any], step: int) -> None:
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
