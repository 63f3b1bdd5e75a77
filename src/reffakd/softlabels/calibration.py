"""How a similarity matrix becomes soft labels: the diagonal boost and the softmax temperature.

The notebooks use tau = 1, and because the ReLU encoder puts every cosine in [0, 1], their rows
come out nearly uniform (Fashion-MNIST: 0.110 own-class probability against 0.100 uniform). The
``calibrated`` preset instead solves tau for a target mean own-class probability. On Fashion-MNIST
validation accuracy chose the notebook constants (with loss temperature 4) over every sharper
target tried, so ``paper`` is the CLI default and ``calibrated`` keeps the best sharper target
(0.3, best with loss temperature 1); docs/RESULTS.md, "Calibration", has the numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ReffAKDError
from .structure import check_structure

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads PRESETS without it
    import torch

# Notebook diagonal boosts per dataset; other datasets use the CIFAR value.
PAPER_DIAGONAL_BOOST = {"fashion-mnist": 0.008, "cifar100": 0.0225, "tiny-imagenet": 0.0225}
DEFAULT_DIAGONAL_BOOST = 0.0225
# The best sharper target on Fashion-MNIST validation (docs/RESULTS.md, "Calibration").
DEFAULT_TARGET_OWN_PROBABILITY = 0.3
PRESETS = ("calibrated", "paper")


@dataclass
class Calibration:
    """Either a fixed ``temperature`` or a ``target_own_probability`` that tau is solved for."""

    diagonal_boost: float
    temperature: float | None = None
    target_own_probability: float | None = None
    # True: every class gets exactly the target own-class probability, its other classes sharing the rest
    # in the proportions of the softmax (a row whose own similarity is not its largest is not inverted).
    equalize_own: bool = False
    # The placebo controls of the rows' structure (``structure.py``); the own-class mass is kept.
    structure: str = "similarity"
    structure_seed: int = 0

    @classmethod
    def preset(cls, name: str, dataset: str) -> Calibration:
        boost = PAPER_DIAGONAL_BOOST.get(dataset, DEFAULT_DIAGONAL_BOOST)
        if name == "paper":
            return cls(boost, temperature=1.0)
        if name == "calibrated":
            return cls(boost, target_own_probability=DEFAULT_TARGET_OWN_PROBABILITY)
        raise ReffAKDError(f"unknown soft-label preset {name!r}; allowed: {', '.join(PRESETS)}")

    def validate(self) -> None:
        if not (math.isfinite(self.diagonal_boost) and self.diagonal_boost >= 0):
            raise ReffAKDError(f"diagonal boost {self.diagonal_boost} is out of range: it must be a finite number >= 0")
        if (self.temperature is None) == (self.target_own_probability is None):
            raise ReffAKDError("give exactly one of a soft-label temperature and a target own-class probability")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ReffAKDError(
                f"soft-label temperature {self.temperature} is out of range: it must be a finite number > 0"
            )
        if self.target_own_probability is not None and not (0 < self.target_own_probability < 1):
            raise ReffAKDError(
                f"target own-class probability {self.target_own_probability} is out of range: it must lie in (0, 1)"
            )
        if self.equalize_own and self.target_own_probability is None:
            raise ReffAKDError(
                "equalising the own-class probability needs a target own-class probability, not a fixed temperature"
            )
        check_structure(self.structure)

    def resolve_temperature(self, similarity: torch.Tensor) -> float:
        from .similarity import temperature_for_own_probability

        self.validate()
        if self.temperature is not None:
            return self.temperature
        assert self.target_own_probability is not None
        return temperature_for_own_probability(similarity, self.diagonal_boost, self.target_own_probability)

    def apply(self, similarity: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Soft labels and the temperature used."""
        from .similarity import similarity_to_soft_labels
        from .structure import restructure

        tau = self.resolve_temperature(similarity)
        soft = similarity_to_soft_labels(similarity, self.diagonal_boost, tau)
        if self.equalize_own:
            assert self.target_own_probability is not None
            soft = with_own_probability(soft, self.target_own_probability)
        soft = restructure(soft, structure=self.structure, seed=self.structure_seed)
        return soft, tau

    def to_dict(self) -> dict[str, Any]:
        """The knobs added after the first artifacts are written only when set, so that older artifacts' records
        (and the runs that recorded them) stay as they were."""
        d = asdict(self)
        for key, default in (("structure", "similarity"), ("structure_seed", 0)):
            if d[key] == default:
                del d[key]
        return d


def with_own_probability(soft_labels: torch.Tensor, own: float) -> torch.Tensor:
    """Set every diagonal entry to ``own`` and rescale each row's other entries to share ``1 - own``.

    The non-target distribution of each row (what DKD calls NCKD's target) is unchanged.
    """
    import torch

    c = soft_labels.shape[0]
    eye = torch.eye(c, dtype=torch.bool, device=soft_labels.device)
    off = soft_labels.masked_fill(eye, 0.0)
    off = off / off.sum(1, keepdim=True).clamp_min(torch.finfo(off.dtype).tiny)
    return torch.where(eye, torch.full_like(soft_labels, own), (1.0 - own) * off)
