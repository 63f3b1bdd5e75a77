"""Seeding: one call makes a run repeatable on the same machine and software."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: configurations check seeds without it
    import torch

MAX_SEED = 2**63 - 1  # torch takes seeds as 64-bit integers; larger ones failed deep inside a run


def check_seed(seed: int, name: str = "seed") -> None:
    """Refuse, in one line naming ``name``, a seed the generators cannot take."""
    from .errors import ReffAKDError

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ReffAKDError(f"{name} {seed!r} is out of range: it must be an integer from 0 to 2^63 - 1", params=(name,))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order and augmentation."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
