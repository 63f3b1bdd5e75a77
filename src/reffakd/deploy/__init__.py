"""Deployment stage: a trained network exported (ONNX, ``torch.export``), run on image files, and its inference cost.

Above the data, models and measurement floor, beside the engine: it reads checkpoints and images and
never trains.
"""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "bench": "bench_table measure_subject subjects",
        "export": "export_checkpoint",
        "kinds": "INPUT_KINDS OUTPUT_KINDS",
        "model": "DeployedModel open_model read_info",
        "network": "Deployable TrainedNetwork load_network preprocessing",
        "predict": "Prediction format_prediction predict_images write_csv",
    },
)
