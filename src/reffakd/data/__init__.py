"""Data stage: datasets in memory or streamed from disk, the seeded validation split, batch augmentation
and batching."""

from .augment import BatchAugment
from .cache import default_cache_dir
from .cifar import load_cifar10, load_cifar100
from .config import DataConfig, load_splits
from .dataset import DataSplits, ImageDataset, Split, channel_stats, split_fingerprint, split_train_val
from .fashion_mnist import load_fashion_mnist
from .image_folder import load_imagefolder
from .images import ImageFiles, available_memory_bytes, fits_in_memory, materialize
from .loader import TensorBatches
from .mnist import load_mnist
from .registry import DATASET_SIZES, DATASETS, DatasetSize, load_dataset
from .streaming import StreamingBatches, make_batches
from .tiny_imagenet import load_tiny_imagenet

__all__ = [
    "BatchAugment",
    "DATASETS",
    "DATASET_SIZES",
    "DatasetSize",
    "DataConfig",
    "DataSplits",
    "ImageDataset",
    "ImageFiles",
    "Split",
    "StreamingBatches",
    "TensorBatches",
    "available_memory_bytes",
    "channel_stats",
    "default_cache_dir",
    "fits_in_memory",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_fashion_mnist",
    "load_imagefolder",
    "load_mnist",
    "load_splits",
    "load_tiny_imagenet",
    "make_batches",
    "materialize",
    "split_fingerprint",
    "split_train_val",
]
