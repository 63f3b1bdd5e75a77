"""Training engine: one loop for every task, its optimiser and schedule, checkpoints, resume, evaluation,
distributed helpers."""

from .metrics import evaluate
from .optim import OptimConfig, build_optimizer, build_scheduler
from .options import TrainOptions
from .resume import RESUME_FILE, EpochState, load_state
from .signals import TrainingInterrupted
from .speed import AMP_MODES, SpeedOptions
from .task import Selection, Step, Task
from .trainer import FitBatches, FitResult, RunFiles, fit

__all__ = [
    "AMP_MODES",
    "EpochState",
    "FitBatches",
    "FitResult",
    "OptimConfig",
    "RESUME_FILE",
    "RunFiles",
    "Selection",
    "SpeedOptions",
    "Step",
    "Task",
    "TrainOptions",
    "TrainingInterrupted",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "load_state",
]
