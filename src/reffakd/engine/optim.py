"""Optimiser and learning-rate schedule shared by the student and the autoencoder.

The paper trains both with SGD (lr 0.1, momentum 0.9, wd 5e-4) for 200 epochs, LR x0.2 at epochs
60/120/160. Shorter runs keep the same shape: by default the milestones sit at 30/60/80 % of the epochs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ReffAKDError
from ..settings import check_types, is_number, opt

if TYPE_CHECKING:
    import torch

SCHEDULES = ("multistep", "cosine")
# A student's default: cosine beat the steps for LeNet-5 on Fashion-MNIST with every label and with 100 per class
# (docs/RESULTS.md, "A CE baseline at the published level"). The autoencoder and a teacher keep the steps.
STUDENT_SCHEDULE = "cosine"
PAPER_MILESTONE_FRACTIONS = (0.3, 0.6, 0.8)


@dataclass
class OptimConfig:
    epochs: int = opt(30, "epochs")
    batch_size: int = opt(128, "batch size (under torchrun: the global batch)")
    lr: float = opt(0.1, "SGD learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(5e-4, "weight decay")
    schedule: str = opt("multistep", "learning-rate schedule", choices=SCHEDULES)
    # None: 30/60/80 % of the epochs, as 60/120/160 of 200
    milestones: tuple[int, ...] | None = opt(None, "LR milestones in epochs (default: 30/60/80%% of the epochs)")
    gamma: float = opt(0.2, "LR factor at each milestone")

    @classmethod
    def read(cls, section: dict[str, Any], what: str) -> OptimConfig:
        """A spec section's optimiser (its other keys ignored), checked; ``lr: null`` is its ``lr_rule`` {"default":
        LR, MODEL: LR} for its ``model``: a preset's per-student rate (kd-cifar100) follows a swapped-in student."""
        if "lr" in section and section["lr"] is None:
            rule, model = section.get("lr_rule"), section.get("model")
            lr = rule.get(model, rule["default"]) if isinstance(rule, dict) and "default" in rule else None
            if not is_number(lr):
                rules = f'lr_rule {{"default": LR, MODEL: LR}} gives {lr!r} for model {model!r}'
                raise ReffAKDError(f"{what} lr is null and its {rules}; set lr or the rule to a number")
            section = {**section, "lr": float(lr)}
        check_types(cls, section, what)
        cfg = cls(**{k: v for k, v in section.items() if k in cls.__dataclass_fields__})
        cfg.milestones = None if cfg.milestones is None else tuple(cfg.milestones)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Each message names its field as a parameter (``params``): the CLI shows it as the flag that was typed."""

        def bad(name: str, text: str) -> ReffAKDError:
            return ReffAKDError(text, params=(name,))

        if self.epochs < 1:
            raise bad("epochs", f"epochs {self.epochs} is out of range: it must be at least 1")
        if self.batch_size < 1:
            raise bad("batch_size", f"batch_size {self.batch_size} is out of range: it must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", f"learning rate lr {self.lr} is out of range: it must be > 0")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise bad("momentum", f"momentum {self.momentum} is out of range: it must lie in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", f"weight_decay {self.weight_decay} is out of range: it must be >= 0")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"schedule {self.schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")
        if self.milestones is not None and any(m < 1 or m > self.epochs for m in self.milestones):
            raise bad("milestones", f"milestones {list(self.milestones)} must be epochs between 1 and {self.epochs}")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise bad("gamma", f"gamma {self.gamma} is out of range: it must lie in (0, 1]")

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(self.milestones)
        return sorted({max(1, round(f * self.epochs)) for f in PAPER_MILESTONE_FRACTIONS})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = self.resolved_milestones() if self.schedule == "multistep" else None
        return d


OPTIM_KEYS = tuple(OptimConfig.__dataclass_fields__)  # the keys of a spec's optimiser section


def build_optimizer(params: Any, cfg: OptimConfig) -> torch.optim.SGD:
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    import torch

    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.resolved_milestones(), gamma=cfg.gamma)
