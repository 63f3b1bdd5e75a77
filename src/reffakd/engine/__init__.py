"""Training engine: one loop, its optimiser and schedule, checkpoints and evaluation."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .metrics import evaluate
from .optim import OptimConfig, build_optimizer, build_scheduler
from .trainer import FitResult, fit

__all__ = ["FitResult", "OptimConfig", "build_optimizer", "build_scheduler", "evaluate", "fit", "load_checkpoint", "load_model", "save_checkpoint"]
