"""Model stage: the autoencoder behind the soft labels and a registry of classifiers."""

from . import lenet, mobilenetv2, resnet, resnet_cifar, shufflenet, vgg, wrn  # noqa: F401  (register their models)
from .autoencoder import ConvAutoencoder
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .lenet import LeNet5
from .registry import MODELS, available_models, check_classifier, create_model, is_model_name, register_model

__all__ = [
    "MODELS",
    "ConvAutoencoder",
    "LeNet5",
    "available_models",
    "check_classifier",
    "create_model",
    "is_model_name",
    "load_checkpoint",
    "load_model",
    "register_model",
    "save_checkpoint",
]
