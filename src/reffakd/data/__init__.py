"""Data stage: datasets in memory, the seeded validation split, batch augmentation and batching."""

from .augment import BatchAugment
from .dataset import DataSplits, ImageDataset, Split, channel_stats, split_train_val
from .fashion_mnist import default_cache_dir, load_fashion_mnist
from .loader import TensorBatches
from .registry import DATASETS, load_dataset, register_dataset

__all__ = [
    "BatchAugment",
    "DATASETS",
    "DataSplits",
    "ImageDataset",
    "Split",
    "TensorBatches",
    "channel_stats",
    "default_cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "register_dataset",
    "split_train_val",
]
