"""Soft-label stage: autoencoder, embeddings, class similarity, calibration, the SoftLabels artifact."""

from .artifact import SoftLabels, read_soft_label_cost
from .autoencoder_task import AutoencoderTask, embed, embed_batches, reconstruction_mse
from .builder import (
    SOFT_LABELS_FILE,
    SoftLabelConfig,
    build_soft_labels,
    soft_labels_from_similarity,
)
from .calibration import DEFAULT_TARGET_OWN_PROBABILITY, PRESETS, Calibration
from .diagnostics import format_diagnostics, soft_label_diagnostics
from .make import default_config, make_soft_labels, splits_from_tensors
from .similarity import (
    SimilarityAccumulator,
    class_similarity,
    similarity_to_soft_labels,
    temperature_for_own_probability,
)

__all__ = [
    "AutoencoderTask",
    "Calibration",
    "DEFAULT_TARGET_OWN_PROBABILITY",
    "PRESETS",
    "SOFT_LABELS_FILE",
    "SimilarityAccumulator",
    "SoftLabelConfig",
    "SoftLabels",
    "build_soft_labels",
    "class_similarity",
    "default_config",
    "embed",
    "embed_batches",
    "format_diagnostics",
    "make_soft_labels",
    "read_soft_label_cost",
    "reconstruction_mse",
    "similarity_to_soft_labels",
    "soft_label_diagnostics",
    "soft_labels_from_similarity",
    "splits_from_tensors",
    "temperature_for_own_probability",
]
