"""The run spec: methods x seeds x an optional grid, with the data, the student, the teacher and the soft labels.

Validated as a whole before anything is written and saved as ``spec.json``; a grid point of a method is a *variant*,
``reffakd[alpha=0.5,lr=0.05]``, in its own folder.
"""

from __future__ import annotations

import difflib
import itertools
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import distillers  # its names load on first use: the command line's parser reads this module without torch
from .data import DataConfig
from .engine import OptimConfig
from .engine.optim import OPTIM_KEYS, STUDENT_SCHEDULE
from .engine.speed import SPEED_KEYS, SpeedOptions
from .errors import ReffAKDError
from .seed import check_seed
from .settings import check_section, is_number, unknown_key, yaml_hint
from .softlabels.options import SoftLabelSpec, soft_label_config

if TYPE_CHECKING:
    from .distillers import Params
    from .pipeline import StudentConfig
    from .softlabels import SoftLabelConfig

GRID_KEYS = ("methods", "params")
# The student's optimiser keys a grid may vary, beside any method parameter (not milestones: a point that sets epochs
# gets the default ones).
OPTIM_GRID_TYPES: dict[str, type] = {
    "lr": float, "weight_decay": float, "batch_size": int, "epochs": int, "momentum": float, "schedule": str,
    "gamma": float,
}  # fmt: skip


def variant_name(method: str, point: Mapping[str, Any]) -> str:
    """One grid point of a method, its keys as the grid writes them: ``reffakd[alpha=0.5,lr=0.05]``."""
    return f"{method}[" + ",".join(f"{k}={v:g}" if is_number(v) else f"{k}={v}" for k, v in point.items()) + "]"


def folder_name(variant: str) -> str:
    """A run folder name safe on any disk and in shell globs: ``reffakd[alpha=0.5]`` -> ``reffakd_alpha0.5``."""
    name = variant.replace("[", "_").replace("]", "").replace("=", "").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)  # "+": a FORM+SOURCE method keeps its name


@dataclass(frozen=True)
class RunItem:
    """One student run of a comparison: a method (or one grid variant of it) and a seed."""

    variant: str  # the method's name, or variant_name(...) for a grid point
    method: str
    seed: int
    point: tuple[tuple[str, Any], ...] = ()  # the grid point's (key, value) pairs; empty for a plain run
    stage: str = "runs"  # the folder of its stage: "runs", or "tuning" for equal tuning's trials

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.point)

    @property
    def is_grid(self) -> bool:
        """A grid variant (its own row in reports); a tuned method's final runs carry a point but are the method."""
        return bool(self.point) and self.variant != self.method


def with_epochs(section: dict[str, Any], epochs: int) -> dict[str, Any]:
    """An optimiser section at other ``epochs``, whose milestones are then the default fractions of them."""
    return {**section, "epochs": epochs, "milestones": None}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _distinct(value: Any, fits: Callable[[Any], bool]) -> bool:
    """A non-empty list of distinct items, each of which ``fits``: the one check of a spec's lists of values."""
    return isinstance(value, list) and bool(value) and all(map(fits, value)) and len(set(value)) == len(value)


# How a spec's list of values of a type is checked, item by item, and named in a message.
_ITEMS = {str: (lambda v: isinstance(v, str), "names"), int: (_whole, "integers"), float: (_finite, "finite numbers")}


def _check_values(values: Any, kind: type, what: str) -> None:
    """A list of distinct names (``str``), integers (``int``) or finite numbers (any other ``kind``), or one line."""
    fits, name = _ITEMS.get(kind, _ITEMS[float])
    if not _distinct(values, fits):
        text = next((v for v in values if isinstance(v, str)), None) if isinstance(values, list) else None
        raise ReffAKDError(f"{what} must be a non-empty list of distinct {name}, got {values!r}{yaml_hint(text)}")


def _check_axes(axes: dict[str, Any], types: Mapping[str, type], what: str) -> None:
    """A grid's or a tune section's ``params``: each key one that may vary (``types``), with a list of its values."""
    for key, values in axes.items():
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ReffAKDError(f"{what} key {key!r} cannot vary{hint}; allowed: {', '.join(types)}")
        _check_values(values, types[key], f"{what} {key}")


@dataclass
class GridSpec:
    """A spec's ``grid`` section: each listed method runs once per combination of ``params`` values."""

    methods: list[str]
    params: dict[str, list[Any]]

    @classmethod
    def read(cls, g: Any, where: str) -> GridSpec:
        if not isinstance(g, dict) or set(g) != set(GRID_KEYS):
            got = sorted(g) if isinstance(g, dict) else type(g).__name__
            raise ReffAKDError(
                f"{where}: grid must be an object with exactly the keys {', '.join(GRID_KEYS)}, or null; got {got}"
            )
        _check_values(g["methods"], str, f"{where}: grid methods")
        for m in g["methods"]:
            distillers.get_method(m)
        if not isinstance(g["params"], dict) or not g["params"]:
            raise ReffAKDError(
                f"{where}: grid params must map keys to lists of values, e.g. "
                f"{{alpha: [0.1, 0.5], lr: [0.05, 0.1]}}; got {g['params']!r}"
            )
        _check_axes(g["params"], {**distillers.parameter_types(), **OPTIM_GRID_TYPES}, f"{where}: grid")
        return cls(list(g["methods"]), {k: list(v) for k, v in g["params"].items()})

    def points(self) -> list[dict[str, Any]]:
        """Every combination, the last key varying fastest (as written)."""
        return [dict(zip(self.params, values)) for values in itertools.product(*self.params.values())]


@dataclass
class TuneSpec:
    """A spec's ``tune`` section (``tuning.py``): ``trials`` per method of ``epochs`` over ``seeds`` (unset: [0]);
    ``params``: optimiser axes crossed with every method's grid (ce is tuned too); ``seed``: which trials to sample."""

    trials: int
    epochs: int
    seeds: list[int] | None = None
    params: dict[str, list[float]] | None = None
    seed: int | None = None

    @classmethod
    def read(cls, t: Any, where: str) -> TuneSpec:
        keys = tuple(cls.__dataclass_fields__)
        if not isinstance(t, dict) or not set(t) <= set(keys) or not {"trials", "epochs"} <= set(t):
            got = sorted(t) if isinstance(t, dict) else type(t).__name__
            raise ReffAKDError(
                f"{where}: tune must be an object with trials and epochs (and optionally seeds, params, seed), "
                f"or null; got {got}"
            )
        for key in ("trials", "epochs"):
            if not _whole(t[key]) or t[key] < 1:
                raise ReffAKDError(f"{where}: tune {key} {t[key]!r} is out of range: a whole number, at least 1")
        _check_values(t.get("seeds", [0]), int, f"{where}: tune seeds")
        if not isinstance(t.get("seed", 0), int):
            raise ReffAKDError(f"{where}: tune seed {t.get('seed')!r} must be an integer")
        axes = t.get("params", {})
        if not isinstance(axes, dict):
            raise ReffAKDError(f"{where}: tune params must map optimiser keys to lists of values, got {axes!r}")
        tunable = {k: v for k, v in OPTIM_GRID_TYPES.items() if k != "epochs" and v is not str}
        _check_axes(axes, tunable, f"{where}: tune params")
        return cls(**t)

    @property
    def trial_seeds(self) -> list[int]:
        return self.seeds or [0]

    def to_dict(self) -> dict[str, Any]:
        """The keys given (``spec.json``, ``config.yaml``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


# Each section's keys (any other is a typo that would silently do nothing) and the dataclass whose field types its
# values have (an optimiser's are checked by ``OptimConfig.read``, once ``lr: null`` is resolved), checked when read.
SECTIONS: dict[str, tuple[tuple[str, ...], type | None]] = {
    "data": (tuple(DataConfig.__dataclass_fields__), DataConfig),
    "student": (("model", *OPTIM_KEYS, "lr_rule"), None),
    "teacher": (("checkpoint", "model", "seed", *OPTIM_KEYS, "lr_rule"), None),
    "speed": (SPEED_KEYS, SpeedOptions),
}


def _is_method(name: Any) -> bool:
    try:
        distillers.get_method(name)
    except ReffAKDError:
        return False
    return True


@dataclass
class NetworkSpec:
    """A network the spec trains: the ``student``, or a ``teacher`` trained once into <out>/teacher. Its keys are the
    flags' (``model``, a teacher's ``seed``, ``OptimConfig``'s: one left out is its default)."""

    model: str
    optim: OptimConfig
    seed: int = 0
    written: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as read, for ``spec.json``

    @classmethod
    def read(cls, section: Any, where: str, what: str = "student", check: bool = True) -> NetworkSpec:
        """Its keys and, with ``check`` (not for a teacher that no method distils), its values, each error one line."""
        check_section(what, section, where, *SECTIONS[what])
        model, seed = section.get("model", "lenet5" if what == "student" else None), section.get("seed", 0)
        if not check:
            return cls(model, OptimConfig(**{k: v for k, v in section.items() if k in OPTIM_KEYS}), seed, dict(section))
        net = cls(model, OptimConfig.read(section, what), seed, dict(section))
        check_seed(seed, "seed")
        from .models import available_models, is_model_name

        if not is_model_name(model):
            known = f"available: {', '.join(available_models())}, or timm/NAME"
            if what == "teacher":
                raise ReffAKDError(f"{where}: teacher model {model!r} is unknown; {known}")
            raise ReffAKDError(f"unknown model {model!r}; {known}", params=("model",))
        return net


@dataclass(frozen=True)
class TeacherCheckpoint:
    """A spec's ``teacher: {checkpoint: PATH}``: a trained network given instead of one the comparison trains."""

    checkpoint: str


def read_teacher(section: Any, where: str, used: bool) -> NetworkSpec | TeacherCheckpoint:
    """``{checkpoint: PATH}`` alone, or a network to train (its values checked when a method distils it)."""
    if isinstance(section, dict) and "checkpoint" in section:
        if set(section) != {"checkpoint"} or not isinstance(section["checkpoint"], str):
            raise ReffAKDError(f"{where}: teacher is {{checkpoint: PATH}} alone or a network to train, got {section!r}")
        return TeacherCheckpoint(section["checkpoint"])
    return NetworkSpec.read(section, where, "teacher", check=used)


def _network(what: str, first: dict[str, Any], **optim: Any) -> Any:  # a default, its keys in spec.json's order
    return field(default_factory=lambda: NetworkSpec.read({**first, **asdict(OptimConfig(**optim))}, "", what, False))


@dataclass
class RunSpec:
    """Everything a comparison runs; saved as ``spec.json`` in its folder."""

    # every registered method in report order, but the -semi ones (``default_methods``)
    methods: list[str] = field(default_factory=lambda: distillers.default_methods())
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    data: DataConfig = field(default_factory=DataConfig)
    student: NetworkSpec = _network("student", {"model": "lenet5"}, epochs=10, schedule=STUDENT_SCHEDULE)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {"checkpoint": PATH} or {"model": NAME, "seed": S, **optimiser}: trained once into <out>/teacher
    teacher: NetworkSpec | TeacherCheckpoint = _network("teacher", {"model": "resnet8", "seed": 0}, epochs=10)
    # built once into <out>/softlabels, or given (``path``)
    soft_labels: SoftLabelSpec = field(default_factory=lambda: SoftLabelSpec(autoencoder=asdict(OptimConfig(epochs=5))))
    # {"methods": [...], "params": {KEY: [values], ...}} (``GridSpec``); null: no grid
    grid: GridSpec | None = None
    # equal tuning on validation before the final runs (``TuneSpec``, ``tuning.py``); null: parameters as given
    tune: TuneSpec | None = None
    # [100, 500, "all"]: a label-budget study (``study.py``), the comparison once per labels-per-class budget
    budgets: list[Budget] | None = None
    # the speed options of every network the spec trains (the autoencoder takes cuda_graph alone); null: all off
    speed: SpeedOptions = field(default_factory=SpeedOptions)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> RunSpec:
        if not isinstance(data, dict):
            raise ReffAKDError(f"{where}: a comparison spec is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise unknown_key(where, unknown[0], cls.__dataclass_fields__)
        spec = cls()
        default = spec.to_dict()
        for key, value in data.items():  # data and student update the default's keys; each section is read by validate
            if key in ("data", "student") and isinstance(value, dict):
                value = {**default[key], **value}
            setattr(spec, key, value)
        spec.validate(where)
        return spec

    def to_dict(self) -> dict[str, Any]:
        tune = self.tune.to_dict() if self.tune is not None else None
        teacher = dict(self.teacher.written) if isinstance(self.teacher, NetworkSpec) else asdict(self.teacher)
        budgets = None if self.budgets is None else [b.written for b in self.budgets]
        speed = self.speed.switched_on() or None  # null when all are off, as before the section existed
        return {**asdict(self), "student": dict(self.student.written), "teacher": teacher, "budgets": budgets,
                "soft_labels": self.soft_labels.to_dict(), "tune": tune, "speed": speed}  # fmt: skip

    # ------------------------------------------------------------------ checks, before anything is written
    def validate(self, where: str = "spec") -> None:
        try:
            self._validate(where)
        except (TypeError, ValueError) as exc:  # a value of the wrong type that no check below names
            raise ReffAKDError(f"{where}: a value has the wrong type ({exc})") from None

    def _validate(self, where: str) -> None:
        if not self.methods or not all(isinstance(m, str) for m in self.methods):
            names = ", ".join(distillers.method_names())
            raise ReffAKDError(f"{where}: methods must be a non-empty list of names from: {names}")
        for m in self.methods:
            distillers.get_method(m)
        if not self.seeds or not all(map(_whole, self.seeds)):
            raise ReffAKDError(f"{where}: seeds must be a non-empty list of integers, got {self.seeds!r}")
        for s in self.seeds:
            check_seed(s)
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.methods)) != len(self.methods):
            raise ReffAKDError(f"{where}: methods and seeds must not repeat")
        if not isinstance(self.soft_labels, SoftLabelSpec):  # the typed sections, read once
            self.soft_labels = SoftLabelSpec.read(self.soft_labels, where)
        if self.tune is not None and not isinstance(self.tune, TuneSpec):
            self.tune = TuneSpec.read(self.tune, where)
        if self.grid is not None and not isinstance(self.grid, GridSpec):
            self.grid = GridSpec.read(self.grid, where)
        if not isinstance(self.data, DataConfig):
            check_section("data", self.data, where, *SECTIONS["data"])
            self.data = DataConfig(**self.data)
        if not isinstance(self.student, NetworkSpec):
            self.student = NetworkSpec.read(self.student, where)
        if not isinstance(self.teacher, (NetworkSpec, TeacherCheckpoint)):
            self.teacher = read_teacher(self.teacher, where, used=bool(self.teacher_methods()))
        if self.budgets is not None:
            self.budgets = read_budgets(self.budgets, where)
        if not isinstance(self.speed, SpeedOptions):
            check_section("speed", {} if self.speed is None else self.speed, where, *SECTIONS["speed"])
            self.speed = SpeedOptions(**(self.speed or {}))
        for m, params in self.method_params.items():
            if not _is_method(m) or not isinstance(params, dict):
                raise ReffAKDError(
                    f"{where}: method_params must map method names to objects; {m!r} is not a method or its value "
                    "not an object"
                )
            for key, value in params.items():
                if value is not None and not is_number(value):
                    raise ReffAKDError(f"{where}: method_params {m} {key} {value!r} must be a number{yaml_hint(value)}")
        try:
            self.speed.check()
        except ReffAKDError as exc:
            raise ReffAKDError(f"{where}: speed {exc}") from None
        self._check_same_runs(where)
        self._check_grid(where)
        self._check_budgets(where)
        grid = self.grid.methods if self.grid else []
        for m in (m for m in self.method_order() if m not in grid):  # read and checked once; a grid's points: above
            self.parameters(m)
        self.data.label_budget()
        given = self.soft_labels.path is not None
        if given and self.soft_label_methods(semi=True) and self.soft_label_methods(semi=False):
            raise ReffAKDError(
                f"{where}: a given soft_labels path serves either the semi-supervised methods "
                f"({', '.join(sorted(self.soft_label_methods(semi=True)))}) or the others, not both; run them apart"
            )
        restructuring = sorted(m for m in self.soft_label_methods() if distillers.restructures_soft_labels(m))
        if restructuring and self.soft_labels.structure != "similarity":
            raise ReffAKDError(
                f"{where}: methods {', '.join(restructuring)} apply their own structure to the soft labels; leave "
                f"soft_labels structure at similarity (it is {self.soft_labels.structure!r})"
            )
        if self.soft_label_methods() and not given:
            self.soft_label_config()

    def _check_same_runs(self, where: str) -> None:
        """Two names for one run (``reffakd`` and ``kd+aesl``, same parameters) would be paired as two methods."""
        seen: dict[tuple[Any, ...], str] = {}
        for m in self.methods:
            method = distillers.get_method(m)
            if method.form is None:  # a method of its own (ce, ls): its name is what runs
                continue
            params = asdict(self.parameters(m))
            key = (method.form, method.target_source, tuple(sorted(params.items())))
            if key in seen:
                raise ReffAKDError(
                    f"{where}: methods {seen[key]} and {m} run the same (loss form {method.form}, source "
                    f"{method.target_source}, the same parameters); keep one, or set their parameters apart in "
                    "method_params"
                )
            seen[key] = m

    def _check_grid(self, where: str) -> None:
        """The grid's points and the tuning trials against the spec (the sections themselves were checked when read):
        each a valid run (a method without a varied parameter, a value out of range), each in its own folder."""
        if self.grid is not None and self.tune is not None:
            raise ReffAKDError(f"{where}: tune and grid exclude each other: tuning makes each method's grid itself")
        methods, points, axes = (self.grid.methods, self.grid.points(), self.grid.params) if self.grid else ([], [], {})
        for m in self.methods:
            run = distillers.get_method(m).source.same_seed_run
            if run is not None and run in methods:
                raise ReffAKDError(
                    f"{where}: {m} distils the plain {run} run of its seed; leave {run} out of the grid methods"
                )
        names = [folder_name(variant_name(m, p)) for m in methods for p in points]
        if len(set(names)) != len(names):
            raise ReffAKDError(
                f"{where}: grid values too close to tell apart in run names (6 significant digits): "
                + " x ".join(str(v) for v in axes.values())
            )
        epochs = {"epochs": self.tune.epochs} if self.tune else {}
        trials = [(m, p, {**p, **epochs}) for m in self.methods for p in self.tuning_points(m)]
        for what, runs in (("grid point", [(m, p, p) for m in methods for p in points]), ("tuning trial", trials)):
            for m, shown, point in runs:
                try:
                    self.student_config(m, self.seeds[0], point=point).validate()
                except ReffAKDError as exc:
                    raise ReffAKDError(f"{where}: {what} {variant_name(m, shown)}: {exc}") from None

    def _check_budgets(self, where: str) -> None:
        if self.budgets is None:
            return
        if any(b.teacher_epochs is not None for b in self.budgets) and isinstance(self.teacher, TeacherCheckpoint):
            raise ReffAKDError(
                f"{where}: a budget's teacher_epochs needs a teacher trained by the study (teacher: model...), "
                "not a teacher checkpoint"
            )
        if self.data.labels_per_class is not None or self.data.label_fraction is not None:
            raise ReffAKDError(
                f"{where}: budgets and data labels_per_class/label_fraction exclude each other: the budgets set them"
            )

    def tuning_points(self, method: str) -> list[dict[str, Any]]:
        """The trials of ``method``: its registry tuning grid x the tune section's optimiser axes, sampled down to
        ``trials`` (seeded). None for a method with nothing to vary, or that distils another run of its seed (tfkd-self:
        its trials would need that run's)."""
        if self.tune is None or distillers.get_method(method).source.same_seed_run is not None:
            return []
        axes = {**distillers.tuning_grid(method), **(self.tune.params or {})}
        if not axes:
            return []
        points = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
        trials = self.tune.trials
        if len(points) > trials:
            rng = random.Random(f"reffakd-tune/{self.tune.seed or 0}/{method}")
            points = [points[i] for i in sorted(rng.sample(range(len(points)), trials))]
        return points

    def tuning_items(self) -> list[RunItem]:
        """Every trial of every method, over the tune seeds, at the tune epochs, in the ``tuning`` stage."""
        if self.tune is None:
            return []
        epochs, seeds = self.tune.epochs, self.tune.trial_seeds
        return [
            RunItem(variant_name(m, p), m, s, tuple({**p, "epochs": epochs}.items()), stage="tuning")
            for m in self.method_order()
            for p in self.tuning_points(m)
            for s in seeds
        ]

    def teacher_methods(self) -> set[str]:
        """The methods that distil the comparison's one teacher network (not a run of their own seed)."""
        return {m for m in self.methods if distillers.get_method(m).source == distillers.TEACHER}

    def soft_label_methods(self, semi: bool | None = None) -> set[str]:
        """The methods that train against the soft-label artifact (``semi``: only the semi-supervised ones, or none)."""
        kinds = {m: distillers.get_method(m).source for m in self.methods}
        return {m for m, k in kinds.items() if k.input == "soft_labels" and (semi is None or k.semi == semi)}

    @cached_property
    def _parameters(self) -> dict[str, Params]:
        return {}  # each method's, once read (``parameters``); not a field: ``spec.json`` holds ``method_params``

    def __getstate__(self) -> dict[str, Any]:
        """A ``--jobs`` worker gets the spec without the cache: a combination's ``Params`` class is made at run time."""
        return {k: v for k, v in self.__dict__.items() if k != "_parameters"}

    def parameters(self, method: str) -> Params:
        """``method``'s parameters: its defaults with its ``method_params``, checked when first asked, then trusted."""
        if method not in self._parameters:
            self._parameters[method] = distillers.get_method(method).parameters(self.method_params.get(method, {}))
        return self._parameters[method]

    def student_config(self, method: str, seed: int, *, point: Mapping[str, Any] | None = None) -> StudentConfig:
        """One run's config; a grid ``point`` overrides ``method_params`` and the student's optimiser (its epochs: the
        default milestones)."""
        point = dict(point or {})
        names = distillers.parameter_types()
        varied = {k: v for k, v in point.items() if k in names}
        params = {**self.method_params.get(method, {}), **varied} if varied else self.parameters(method)
        optim = replace(self.student.optim, **{k: v for k, v in point.items() if k in OPTIM_GRID_TYPES})
        optim.milestones = None if "epochs" in point else optim.milestones
        from .pipeline import StudentConfig

        return StudentConfig(method, self.student.model, optim, seed, params)

    @cached_property
    def _soft_label_config(self) -> SoftLabelConfig:
        return soft_label_config(self.soft_labels, self.data.dataset)

    def soft_label_config(self) -> SoftLabelConfig:
        """The builder's settings for the soft labels the spec makes, read and checked once (when validated)."""
        return self._soft_label_config

    def method_order(self) -> list[str]:
        """The baseline and every run another method distils first (tfkd-self's ce joins when missing), then the rest
        as given, then the methods that distil another run of their seed."""
        methods = list(self.methods)
        for m in list(methods):
            run = distillers.get_method(m).source.same_seed_run
            if run is not None and run not in methods:
                methods.insert(0, run)
        registered = {m: distillers.get_method(m) for m in methods}
        first = {r.source.same_seed_run for r in registered.values()} | {
            m for m, r in registered.items() if r.role == "baseline"
        }
        return sorted(methods, key=lambda m: (registered[m].source.same_seed_run is not None, m not in first))

    def run_items(self, tuned: Mapping[str, Mapping[str, Any]] | None = None) -> list[RunItem]:
        """Every run in ``method_order`` over the seeds: a grid method's variants, a ``tuned`` one's choice."""
        methods, points = (self.grid.methods, self.grid.points()) if self.grid else ([], [])
        items: list[RunItem] = []
        for method in self.method_order():
            if method in methods:
                items += [
                    RunItem(variant_name(method, p), method, s, tuple(p.items())) for p in points for s in self.seeds
                ]
            else:
                chosen = tuple((tuned or {}).get(method, {}).items())
                items += [RunItem(method, method, s, chosen) for s in self.seeds]
        return items


BUDGET_KEYS = ("labels", "epochs", "tune_epochs", "teacher_epochs", "seeds")


@dataclass
class Budget:
    """One entry of a study's ``budgets`` (``study.py``): its labels per class, a count or "all". Its own epochs let a
    few labels' baseline (and teacher) converge; its own seeds let a costly budget run fewer final runs (None: the
    spec's)."""

    labels: int | str
    epochs: int | None = None
    tune_epochs: int | None = None
    teacher_epochs: int | None = None
    seeds: list[int] | None = None
    written: Any = field(default=None, repr=False, compare=False)  # as given, for ``spec.json``

    @classmethod
    def read(cls, value: Any) -> Budget | None:
        """``100``, ``"all"`` or a mapping of ``BUDGET_KEYS`` (a budget already read: itself); None if malformed."""
        if isinstance(value, Budget):
            return value
        item = dict.fromkeys(BUDGET_KEYS) | (value if isinstance(value, dict) else {"labels": value})
        count = lambda v: _whole(v) and v >= 1  # noqa: E731
        ok = (
            set(item) == set(BUDGET_KEYS)
            and (item["labels"] == "all" or count(item["labels"]))
            and all(item[k] is None or count(item[k]) for k in ("epochs", "tune_epochs", "teacher_epochs"))
            and (item["seeds"] is None or _distinct(item["seeds"], lambda s: _whole(s) and s >= 0))
        )
        return cls(**item, written=value) if ok else None

    @property
    def folder(self) -> str:
        """Its comparison's folder in the study's: ``labels-100``, ``labels-all``."""
        return f"labels-{self.labels}"


def read_budgets(value: Any, where: str) -> list[Budget]:
    """A study's ``budgets``: a non-empty list of distinct budgets, each read, or one line saying what they may be."""
    items = [Budget.read(v) for v in value] if isinstance(value, list) else []
    labels = [str(b.labels) for b in items if b is not None]
    if not items or None in items or len(set(labels)) != len(labels):
        raise ReffAKDError(
            f"{where}: budgets must be a non-empty list of distinct labels-per-class counts (at least 1) or "
            f'"all", each alone or as {{labels: N, epochs: E, tune_epochs: e, teacher_epochs: t, '
            f"seeds: [distinct seeds >= 0]}}, got {value!r}"
        )
    return items  # type: ignore[return-value]  # no None among them
