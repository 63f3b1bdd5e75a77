"""The soft labels' options: ``SoftLabelSpec``, whose fields are the flags of ``softlabels`` and ``run`` and the keys of
a spec's ``soft_labels`` section, and ``soft_label_config``, its one conversion into the builder's ``SoftLabelConfig``.

Torch-free: the command line's parser reads the dataclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.optim import OPTIM_KEYS, OptimConfig
from ..errors import ReffAKDError
from ..seed import check_seed
from ..settings import check_section, deprecated, opt
from .calibration import PRESETS as SOFT_LABEL_PRESETS
from .structure import STRUCTURES

if TYPE_CHECKING:
    from .builder import SoftLabelConfig

# Keys of the ``soft_labels`` section written before its keys were its flags' names: still read, with a note.
OLD_SOFT_LABEL_KEYS = {"diagonal_boost": "boost", "temperature": "soft_temperature",
                       "target_own_probability": "target_own_prob", "equalize_own": "equalize_own_prob"}  # fmt: skip


@dataclass
class SoftLabelSpec:
    """A spec's ``soft_labels`` section; its ``opt`` fields are the flags of ``softlabels`` and ``run`` (``--seed`` and
    ``--ae-*`` fill the rest). Unset (None): the preset's."""

    preset: str = opt(
        "paper", "paper: the notebooks' boost and tau = 1 (best on validation, docs/RESULTS.md); "
        "calibrated: tau solved for a mean own-class probability of 0.3", choices=SOFT_LABEL_PRESETS,
    )  # fmt: skip
    boost: float | None = opt(None, "diagonal boost b (default: the notebook value for the dataset)")
    soft_temperature: float | None = opt(None, "fixed softmax temperature tau of the soft labels")
    target_own_prob: float | None = opt(None, "solve tau so the mean own-class probability is this")
    equalize_own_prob: bool | None = opt(
        None, "give every class exactly the target own-class probability, the rest in the softmax's proportions "
        "(default: the preset's)",
    )  # fmt: skip
    structure: str = opt(
        "similarity", "placebo controls of the rows' structure: shuffled permutes each row's off-diagonal entries "
        "(seeded by --structure-seed), uniform spreads them evenly; the own-class mass is kept", choices=STRUCTURES,
    )  # fmt: skip
    structure_seed: int = opt(0, "seed of the shuffled structure's permutations")
    samples_per_class: int | None = opt(
        None, "similarity from k sampled images per class (notebooks: 40; default: all)"
    )
    augment_embeddings: bool = opt(False, "embed augmented images, as the notebooks do")
    unlabelled_dir: str | None = opt(
        None, "semi-supervised: a folder of unlabelled images (any depth) the autoencoder also trains on; "
        "the class similarity uses only the labelled training images (with --samples-per-class, k of them per class)",
    )  # fmt: skip
    budget_unlabelled: bool = opt(
        False, "semi-supervised: the autoencoder also trains on the training images whose labels a labelled budget "
        "withholds (--labels-per-class); the class similarity uses only the labelled ones",
    )  # fmt: skip
    seed: int = 0
    autoencoder: dict[str, Any] = field(default_factory=dict)  # its optimiser's keys (OptimConfig)
    path: str | None = None  # a soft_labels.safetensors given instead: the other keys then do nothing

    @classmethod
    def read(cls, section: Any, where: str, note: bool = True) -> SoftLabelSpec:
        """A spec's section, its keys and their types checked; an old key is read as its flag's (``note``: say so)."""
        section = dict(section) if isinstance(section, dict) else section
        for old, new in OLD_SOFT_LABEL_KEYS.items():
            if isinstance(section, dict) and old in section:
                if new in section:
                    raise ReffAKDError(f"{where}: soft_labels {old!r} is the old name of {new!r}; give {new} alone")
                if note:
                    deprecated(f"{where}: soft_labels", old, new)
                section[new] = section.pop(old)
        check_section("soft_labels", section, where, tuple(cls.__dataclass_fields__), cls)
        check_section("soft_labels.autoencoder", section.get("autoencoder", {}), where, OPTIM_KEYS)
        return cls(**section)

    def to_dict(self) -> dict[str, Any]:
        """The keys set (a given artifact: its path alone); a switch left off is not written (a folder's spec stays)."""
        if self.path is not None:
            return {"path": self.path}
        off = {"augment_embeddings": False, "budget_unlabelled": False, "structure": "similarity", "structure_seed": 0}
        return {k: v for k, v in asdict(self).items() if v is not None and not (k in off and v == off[k])}


def soft_label_config(section: SoftLabelSpec | Mapping[str, Any], dataset: str) -> SoftLabelConfig:
    """A ``soft_labels`` section (or a mapping of its keys) as the builder's config (the one conversion);
    a fixed temperature replaces the preset's target own-class probability and back."""
    if not isinstance(section, SoftLabelSpec):
        section = SoftLabelSpec.read(dict(section), "soft_label_config")
    from .builder import SoftLabelConfig
    from .calibration import Calibration

    cal = Calibration.preset(section.preset, dataset)
    if section.boost is not None:
        cal.diagonal_boost = section.boost
    if section.soft_temperature is not None:
        cal.temperature, cal.target_own_probability = section.soft_temperature, None
    if section.target_own_prob is not None:
        cal.temperature, cal.target_own_probability = None, section.target_own_prob
    if section.equalize_own_prob is not None:
        cal.equalize_own = section.equalize_own_prob
    check_seed(section.structure_seed, "structure_seed")
    cal.structure, cal.structure_seed = section.structure, section.structure_seed
    cal.validate()
    samples = section.samples_per_class
    if samples is not None and samples < 2:
        raise ReffAKDError(
            f"samples_per_class {samples} is out of range: it must be at least 2", params=("samples_per_class",)
        )
    check_seed(section.seed, "seed")
    autoencoder = OptimConfig.read(section.autoencoder, "autoencoder")
    unlabelled = section.unlabelled_dir
    if unlabelled is not None and not Path(unlabelled).is_dir():
        raise ReffAKDError(
            f"unlabelled image folder {unlabelled} does not exist or is not a folder", params=("unlabelled_dir",)
        )
    return SoftLabelConfig(cal, section.preset, autoencoder, samples, section.augment_embeddings, section.seed,
                           unlabelled, section.budget_unlabelled)  # fmt: skip
