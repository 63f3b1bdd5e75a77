"""Model stage: the autoencoder behind the soft labels and a registry of classifiers."""

from . import lenet, mobilenetv2, resnet, resnet_cifar, shufflenet, vgg, wrn  # noqa: F401  (register their models)
from .autoencoder import ConvAutoencoder
from .lenet import LeNet5
from .registry import MODELS, available_models, create_model, register_model

__all__ = ["ConvAutoencoder", "LeNet5", "MODELS", "available_models", "create_model", "register_model"]
