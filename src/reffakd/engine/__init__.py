"""Training engine: one loop for every task, its optimiser and schedule, checkpoints, resume, evaluation,
distributed helpers."""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "metrics": "evaluate",
        "optim": "OptimConfig build_optimizer build_scheduler",
        "options": "TrainOptions",
        "resume": "RESUME_FILE EpochState load_state",
        "signals": "TrainingInterrupted",
        "speed": "AMP_MODES SpeedOptions",
        "task": "Selection Step Task",
        "trainer": "FitBatches FitResult RunFiles fit",
    },
)
