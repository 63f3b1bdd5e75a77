"""Deployment stage: a trained network exported (ONNX, ``torch.export``), run on image files, and its inference cost.

Above the data, models and measurement floor, beside the engine: it reads checkpoints and images and
never trains.
"""

from .bench import bench_table, measure_subject, subjects
from .export import export_checkpoint
from .model import DeployedModel, open_model, read_info
from .network import INPUT_KINDS, OUTPUT_KINDS, Deployable, TrainedNetwork, load_network, preprocessing
from .predict import Prediction, format_prediction, predict_images, write_csv

__all__ = [
    "INPUT_KINDS",
    "OUTPUT_KINDS",
    "Deployable",
    "DeployedModel",
    "Prediction",
    "TrainedNetwork",
    "bench_table",
    "export_checkpoint",
    "format_prediction",
    "load_network",
    "measure_subject",
    "open_model",
    "predict_images",
    "preprocessing",
    "read_info",
    "subjects",
    "write_csv",
]
