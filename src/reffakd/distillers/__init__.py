"""Distiller stage: one class per method, all driven by the same training engine."""

from . import methods  # noqa: F401  (registers ce and reffakd)
from .base import DISTILLERS, Distiller, build_distiller, register_distiller
from .methods import CrossEntropy, ReffAKD

__all__ = ["DISTILLERS", "CrossEntropy", "Distiller", "ReffAKD", "build_distiller", "register_distiller"]
