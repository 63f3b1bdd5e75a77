"""reffakd: knowledge distillation without a teacher network.

Soft labels for your own training loop (docs/API.md, examples/own_loop.py)::

    import reffakd
    soft = reffakd.make_soft_labels("fashion-mnist")              # or ((images, labels), class_names=...)
    criterion = reffakd.ReffAKDLoss(soft, alpha=0.5, temperature=4.0)
    loss = criterion(student(images), labels)

The names below are loaded on first use, so that ``import reffakd`` (and the command line's ``--help``) does not
import torch until a name that needs it is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ReffAKDError
from .version import __version__

if TYPE_CHECKING:
    from .data import DataConfig, DataSplits, load_splits
    from .losses import InstanceKDLoss, ReffAKDLoss
    from .softlabels import SoftLabelConfig, SoftLabels, default_config, make_soft_labels, splits_from_tensors

# public name -> the module that defines it
_LAZY = {
    "make_soft_labels": "softlabels",
    "default_config": "softlabels",
    "splits_from_tensors": "softlabels",
    "SoftLabels": "softlabels",
    "SoftLabelConfig": "softlabels",
    "ReffAKDLoss": "losses",
    "InstanceKDLoss": "losses",
    "DataConfig": "data",
    "DataSplits": "data",
    "load_splits": "data",
}

__all__ = [
    "DataConfig",
    "DataSplits",
    "InstanceKDLoss",
    "ReffAKDError",
    "ReffAKDLoss",
    "SoftLabelConfig",
    "SoftLabels",
    "__version__",
    "default_config",
    "load_splits",
    "make_soft_labels",
    "splits_from_tensors",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reffakd' has no attribute {name!r}")
