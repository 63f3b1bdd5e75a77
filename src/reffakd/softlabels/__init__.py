"""Soft-label stage: autoencoder, embeddings, class similarity, calibration, the SoftLabels artifact."""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "artifact": "SoftLabels read_soft_label_cost",
        "autoencoder_task": "AutoencoderTask embed embed_batches reconstruction_mse",
        "builder": "SOFT_LABELS_FILE SoftLabelConfig build_soft_labels soft_labels_from_similarity",
        "calibration": "DEFAULT_TARGET_OWN_PROBABILITY PRESETS Calibration",
        "diagnostics": "format_diagnostics soft_label_diagnostics",
        "make": "default_config make_soft_labels splits_from_tensors",
        "similarity": (
            "SimilarityAccumulator class_similarity similarity_to_soft_labels temperature_for_own_probability"
        ),
    },
)
