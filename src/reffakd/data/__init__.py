"""Data stage: datasets in memory or streamed from disk, the seeded validation split, batch augmentation
and batching."""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "augment": "BatchAugment",
        "cache": "default_cache_dir",
        "cifar": "load_cifar10 load_cifar100",
        "config": "DataConfig load_splits",
        "dataset": "DataSplits ImageDataset Split channel_stats split_fingerprint split_train_val",
        "fashion_mnist": "load_fashion_mnist",
        "image_folder": "load_imagefolder",
        "images": "ImageFiles available_memory_bytes fits_in_memory materialize",
        "loader": "TensorBatches",
        "mnist": "load_mnist",
        "registry": "DATASET_SIZES DATASETS DatasetSize load_dataset",
        "streaming": "StreamingBatches make_batches",
        "tiny_imagenet": "load_tiny_imagenet",
    },
)
