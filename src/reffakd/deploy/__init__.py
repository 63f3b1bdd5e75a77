"""Deployment stage: a trained network exported (ONNX, ``torch.export``), run on image files, and its inference cost.

Above the data, models and measurement floor, beside the engine: it reads checkpoints and images and
never trains.
"""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "bench": "bench_table measure_subject subjects",
        "export": "export_checkpoint read_info",
        "kinds": "INPUT_KINDS OUTPUT_KINDS",
        "network": "Deployable TrainedNetwork load_network preprocessing",
        "predict": "Prediction format_prediction open_classifier predict_images write_csv",
    },
)
