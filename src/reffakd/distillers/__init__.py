"""Distiller stage: one class per method, all driven by the same training engine."""

from . import methods  # noqa: F401  (registers the methods)
from .base import DISTILLERS, Distiller, Method, build_distiller, get_method, method_params, register_distiller
from .methods import DKD, CrossEntropy, LabelSmoothing, SoftTargetKD

__all__ = [
    "DISTILLERS",
    "DKD",
    "CrossEntropy",
    "Distiller",
    "LabelSmoothing",
    "Method",
    "SoftTargetKD",
    "build_distiller",
    "get_method",
    "method_params",
    "register_distiller",
]
