"""Which data a run uses and the seeded validation split: the data stage's one configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .dataset import DataSplits, split_train_val
from .registry import load_dataset


@dataclass
class DataConfig:
    """Which data, where from, and the validation split. ``None`` options keep the dataset's own default."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int = 5000
    split_seed: int = 0
    download: bool = True
    image_size: int | None = None  # resize to this square size (default: the dataset's own)
    test_dir: str | None = None  # imagefolder: a separate folder of test images
    test_fraction: float | None = None  # imagefolder without a test folder: share of each class held out (0.2)
    streaming: bool | None = None  # None: stream from disk only when the images would not fit in memory

    def loader_options(self) -> dict[str, Any]:
        options = {
            "image_size": self.image_size,
            "test_dir": self.test_dir,
            "test_fraction": self.test_fraction,
            "streaming": self.streaming,
        }
        return {k: v for k, v in options.items() if v is not None}


def load_splits(cfg: DataConfig, log: Callable[[str], None] = print) -> DataSplits:
    """Load the dataset and carve the seeded validation split (its seed is fixed per run, not per student)."""
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, **cfg.loader_options())
    log(
        f"data: {dataset.name} from {dataset.source}: "
        f"{len(dataset.train_labels)} train / {len(dataset.test_labels)} test, "
        f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size[0]}x{dataset.image_size[1]}"
        + (", streamed from disk" if dataset.streaming else "")
    )
    return split_train_val(dataset, cfg.val_size, cfg.split_seed)
