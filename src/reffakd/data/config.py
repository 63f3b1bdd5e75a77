"""Which data a run uses and the seeded validation split: the data stage's one configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import opt

if TYPE_CHECKING:
    from .budget import LabelBudget
    from .dataset import DataSplits

MAX_IMAGE_SIZE = 1024  # the largest square side a loader resizes to (and a checkpoint may ask for)
MAX_CROP_PAD = 64


@dataclass
class DataConfig:
    """Which data, where from, and the validation split. ``None`` options keep the dataset's own default."""

    dataset: str = opt("fashion-mnist", "one of the registered datasets (reffakd.data.DATASETS)")
    data_dir: str | None = opt(
        None, "folder holding the dataset files (imagefolder: one sub-folder per class); "
        "else a known copy, else a download into the cache",
    )  # fmt: skip
    val_size: int | None = opt(
        None, "validation images carved from the training set (default: 10%% of it, at most 5,000)"
    )
    split_seed: int = opt(0, "seed of the train/validation split")
    download: bool = opt(True, "never try the network", flag="no-download", negate=True)
    image_size: int | None = opt(
        None, "resize images to this square size (default: the dataset's own, 32 for the MNISTs and CIFAR, "
        "64 for Tiny ImageNet)",
    )  # fmt: skip
    test_dir: str | None = opt(None, "imagefolder: a separate folder of test images, one sub-folder per class")
    test_fraction: float | None = opt(
        None, "imagefolder without a test folder: share of each class held out for testing (default: 0.2)"
    )
    streaming: bool | None = opt(
        None, "decode images from disk batch by batch (default: only when they would not fit in memory)"
    )
    labels_per_class: int | None = opt(
        None, "labelled budget: keep the labels of N training images per class (stratified, seeded by "
        "--label-seed); the other training images are unlabelled: no student sees them, and the autoencoder only "
        "with --budget-unlabelled; validation and test do not change",
    )  # fmt: skip
    label_fraction: float | None = opt(None, "labelled budget as a share of each class's training images, in (0, 1]")
    label_seed: int = opt(0, "seed of the labelled subset (with --labels-per-class or --label-fraction)")
    crop_pad: int | None = opt(
        None, "training augmentation: random crop after zero padding by this many pixels, 0 for none "
        "(default: the dataset's: 4 for the MNISTs and CIFAR, 1/8 of the side for Tiny ImageNet and image folders)",
    )  # fmt: skip
    flip: bool | None = opt(None, "training augmentation: random horizontal flips (default: the dataset's)")

    def label_budget(self) -> LabelBudget | None:
        """The labelled budget these options ask for (``None``: every training image is labelled)."""
        from .budget import LabelBudget

        if self.labels_per_class is None and self.label_fraction is None:
            return None
        return LabelBudget(self.labels_per_class, self.label_fraction, self.label_seed)

    def __post_init__(self) -> None:
        """Sizes and seeds the loaders can take, refused here rather than as a traceback (or an exhausted memory)
        deep inside a load."""
        from ..errors import ReffAKDError
        from ..seed import check_seed

        size = self.image_size
        if size is not None and not (isinstance(size, int) and 1 <= size <= MAX_IMAGE_SIZE):
            raise ReffAKDError(
                f"image_size {size} is out of range: it must be between 1 and {MAX_IMAGE_SIZE}", params=("image_size",)
            )
        check_seed(self.split_seed, "split_seed")
        pad = self.crop_pad
        if pad is not None and not (isinstance(pad, int) and 0 <= pad <= MAX_CROP_PAD):
            raise ReffAKDError(
                f"crop_pad {pad} is out of range: it must be between 0 and {MAX_CROP_PAD}", params=("crop_pad",)
            )
        fraction = self.test_fraction
        if fraction is not None and not 0 < fraction < 1:
            raise ReffAKDError(
                f"test_fraction {fraction} is out of range: it must lie in (0, 1)", params=("test_fraction",)
            )

    def folder_around(self, path: str | Path, cache: bool = False, either_way: bool = False) -> tuple[Any, Any] | None:
        """(parameter, folder): the data or test folder given (``cache``: or the cache folder, parameter None) that
        holds ``path`` (``either_way``: or lies in it), by real paths. reffakd never writes into the data (a run
        folder would be an extra class of the next run on it), nor trains an autoencoder on its test images."""
        from .cache import default_cache_dir

        given = [(p, f) for p, f in (("data_dir", self.data_dir), ("test_dir", self.test_dir)) if f is not None]
        real = Path(path).resolve()
        for param, folder in given + ([(None, default_cache_dir())] if cache else []):
            where = Path(folder).resolve()
            if real == where or where in real.parents or (either_way and real in where.parents):
                return param, folder
        return None

    def loader_options(self) -> dict[str, Any]:
        options = {
            "image_size": self.image_size,
            "test_dir": self.test_dir,
            "test_fraction": self.test_fraction,
            "streaming": self.streaming,
        }
        return {k: v for k, v in options.items() if v is not None}


def load_splits(cfg: DataConfig, log: Callable[[str], None] = print) -> DataSplits:
    """Load the dataset and carve the seeded validation split (its seed is fixed per run, not per student),
    then the labelled subset when a budget is asked for."""
    from .budget import describe_budget
    from .dataset import split_train_val
    from .registry import load_dataset

    budget = cfg.label_budget()  # its mistakes are found before the dataset is read
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, **cfg.loader_options())
    log(
        f"data: {dataset.name} from {dataset.source}: "
        f"{len(dataset.train_labels)} train / {len(dataset.test_labels)} test, "
        f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size[0]}x{dataset.image_size[1]}"
        + (", streamed from disk" if dataset.streaming else "")
    )
    splits = split_train_val(dataset, cfg.val_size, cfg.split_seed, budget)
    if cfg.crop_pad is not None or cfg.flip is not None:  # the training augmentation, where the options override it
        pad = splits.augment.pad if cfg.crop_pad is None else cfg.crop_pad
        flip = splits.augment.flip if cfg.flip is None else cfg.flip
        splits = replace(splits, augment=replace(splits.augment, pad=pad, flip=flip))
    if splits.budget is not None:
        log(
            f"data: {describe_budget(splits.budget)}: {splits.budget['labelled']:,} labelled and "
            f"{splits.budget['unlabelled']:,} unlabelled training images; {len(splits.val):,} validation"
        )
    return splits
