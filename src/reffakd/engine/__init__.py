"""Training engine: one loop, its optimiser and schedule, checkpoints, resume, evaluation, distributed helpers."""

from .metrics import evaluate
from .optim import OptimConfig, build_optimizer, build_scheduler
from .resume import RESUME_JSON, load_state, remove_state
from .signals import TrainingInterrupted
from .speed import AMP_MODES, SpeedOptions
from .trainer import FitResult, fit

__all__ = [
    "AMP_MODES",
    "FitResult",
    "OptimConfig",
    "RESUME_JSON",
    "SpeedOptions",
    "TrainingInterrupted",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "load_state",
    "remove_state",
]
