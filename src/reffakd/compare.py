"""``reffakd compare``: methods x seeds from one spec, resumable, one table of accuracy and cost.

One teacher and one soft-label artifact serve every run; a method whose source kind is "a run of
the same seed" (tfkd-self: the CE student; Tf-KD trains the student once, then distils it into a
fresh copy) runs after that run. Each run is written whole or not at all
(``rundir.staged_run_dir``), so a killed comparison resumes by skipping the runs whose folders exist.

An optional ``grid`` runs chosen methods once per combination of values of any method parameter
or student optimiser key, each combination a *variant* (``reffakd[alpha=0.5,lr=0.05]``, folder
``runs/reffakd_alpha0.5_lr0.05/seed<k>``); the report picks one variant per method by its mean
validation top-1, never by test accuracy. ``reffakd sweep`` is this with a required grid and its
own table.

``jobs > 1`` trains that many runs at once in spawned worker processes (each with its share of the
CPU threads, or its own GPU when several are visible); the teacher and the soft labels are made
once beforehand, and only the parent writes reports.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import DataConfig, DataSplits
from .distillers import DISTILLERS, get_method, method_names, parameter_types
from .distillers import TEACHER as TEACHER_SOURCE
from .engine import OptimConfig
from .errors import ReffAKDError
from .io import read_json, write_json, write_text_atomic
from .pipeline import StudentConfig, train_student
from .reports.compare_report import write_compare_report
from .rundir import staged_run_dir
from .softlabels import (
    SOFT_LABELS_FILE,
    Calibration,
    SoftLabelConfig,
    SoftLabels,
    build_soft_labels,
)
from .sources import TeacherNetwork, load_teacher

SPEC_FILE = "spec.json"
CONFIG_FILE = "config.yaml"  # the command line's resolved config (reffakd.cli.config_text)
# Keys that may change between invocations on the same folder: adding methods or seeds resumes and extends.
GROWABLE = ("methods", "seeds")
GRID_KEYS = ("methods", "params")
# What a grid may vary: any method parameter (the registry's, ``parameter_types``), and the student's
# optimiser (not its milestones: a grid point that sets epochs gets the default milestones, 30/60/80 %
# of its epochs).
OPTIM_GRID_TYPES: dict[str, type] = {
    "lr": float, "weight_decay": float, "batch_size": int, "epochs": int, "momentum": float, "schedule": str,
    "gamma": float,
}  # fmt: skip


def grid_key_types() -> dict[str, type]:
    """Every key a grid may vary -> the type of its values (int, float, or str for names)."""
    return {**parameter_types(), **OPTIM_GRID_TYPES}


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def variant_name(method: str, point: Mapping[str, Any]) -> str:
    """The name of one grid point of a method: its keys as the grid writes them, e.g. ``reffakd[alpha=0.5,lr=0.05]``."""
    return f"{method}[" + ",".join(f"{k}={_value_text(v)}" for k, v in point.items()) + "]"


def folder_name(variant: str) -> str:
    """A run folder name safe on any disk and in shell globs: ``reffakd[alpha=0.5]`` -> ``reffakd_alpha0.5``.

    A plain method name is its own folder name.
    """
    name = variant.replace("[", "_").replace("]", "").replace("=", "").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def grid_axes(grid: Mapping[str, Any]) -> tuple[list[str], dict[str, list[Any]]]:
    """(methods, key -> values) of a validated grid."""
    return list(grid["methods"]), {k: list(v) for k, v in grid["params"].items()}


def grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest (as written)."""
    _, axes = grid_axes(grid)
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


@dataclass(frozen=True)
class RunItem:
    """One student run of a comparison: a method (or one grid variant of it) and a seed."""

    variant: str  # the method's name, or variant_name(...) for a grid point
    method: str
    seed: int
    point: tuple[tuple[str, Any], ...] = ()  # the grid point's (key, value) pairs; empty for a plain run

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.point)

    @property
    def is_grid(self) -> bool:
        return bool(self.point)


def _number_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and len(set(value)) == len(value)
    )


YAML_NUMBER_HINT = " (YAML reads 1e-3 or 1.5e4 as text: write 1.0e-3 or 1.5e+4)"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hint(value: Any) -> str:
    """Point at YAML 1.1's rule when a number like 1e-3 (no dot) arrived as text."""
    return (
        YAML_NUMBER_HINT
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip())
        else ""
    )


def _fits(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_fits(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return _is_number(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(tp) in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, typing.get_args(tp)[0]) for v in value)
    return not isinstance(tp, type) or isinstance(value, tp)


def check_types(cls: type, section: Mapping[str, Any], what: str) -> None:
    """Each known key of a spec section has its dataclass field's type: a typo is one clear line, not a traceback."""
    hints = typing.get_type_hints(cls)
    for key, value in section.items():
        if key in hints and not _fits(value, hints[key]):
            expected = str(hints[key]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise ReffAKDError(f"{what} {key} {value!r} has the wrong type: expected {expected}{_hint(value)}")


@dataclass
class SoftLabelFields:
    """The types of the ``soft_labels`` section's keys (``check_types``)."""

    preset: str
    seed: int
    diagonal_boost: float
    temperature: float | None
    target_own_probability: float | None
    equalize_own: bool
    samples_per_class: int | None
    augment_embeddings: bool
    path: str


def _resolve_lr(section: dict[str, Any], what: str) -> float:
    """``lr: null`` defers to the section's ``lr_rule`` {"default": LR, MODEL: LR, ...} by its ``model``.

    So a preset's per-student learning rate (kd-cifar100: 0.01 for mobilenetv2 and the ShuffleNets,
    else 0.05) follows a student swapped in by a spec; a number given as ``lr`` always wins.
    """
    rule = section.get("lr_rule")
    if not isinstance(rule, dict) or "default" not in rule:
        raise ReffAKDError(
            f'{what} lr is null and no lr_rule ({{"default": LR, MODEL: LR}}) gives one; set lr to a number'
        )
    lr = rule.get(section.get("model"), rule["default"])
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ReffAKDError(f"{what} lr_rule gives {lr!r} for model {section.get('model')!r}; expected a number")
    return float(lr)


@dataclass
class CompareSpec:
    """Everything a comparison runs; saved as ``spec.json`` in its folder."""

    methods: list[str] = field(default_factory=method_names)  # every registered method, in report order
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    data: dict[str, Any] = field(default_factory=lambda: asdict(DataConfig()))
    student: dict[str, Any] = field(default_factory=lambda: {"model": "lenet5", **asdict(OptimConfig(epochs=10))})
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {"checkpoint": PATH} or {"model": NAME, "seed": S, **optimiser}: trained once into <out>/teacher
    teacher: dict[str, Any] = field(
        default_factory=lambda: {"model": "resnet8", "seed": 0, **asdict(OptimConfig(epochs=10))}
    )
    # {"path": PATH} or {"preset": NAME, "seed": S, "autoencoder": {**optimiser}}: built once into <out>/softlabels
    soft_labels: dict[str, Any] = field(
        default_factory=lambda: {"preset": "paper", "seed": 0, "autoencoder": asdict(OptimConfig(epochs=5))}
    )
    # {"methods": [...], "params": {KEY: [values], ...}}:
    # each listed method that runs, runs once per combination and seed as a variant (``variant_name``); null: no grid
    grid: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> CompareSpec:
        if not isinstance(data, dict):
            raise ReffAKDError(f"{where}: a comparison spec is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ReffAKDError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(cls.__dataclass_fields__)}")
        spec = cls()
        for key, value in data.items():
            default = getattr(spec, key)
            if (
                isinstance(default, dict)
                and isinstance(value, dict)
                and key not in ("teacher", "soft_labels", "method_params")
            ):
                value = {**default, **value}
            setattr(spec, key, value)
        spec.validate(where)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ checks, before anything is written
    def validate(self, where: str = "spec") -> None:
        try:
            self._validate(where)
        except (TypeError, ValueError) as exc:  # a value of the wrong type that no check below names
            raise ReffAKDError(f"{where}: a value has the wrong type ({exc})") from None

    def _validate(self, where: str) -> None:
        if not self.methods or not all(isinstance(m, str) for m in self.methods):
            raise ReffAKDError(f"{where}: methods must be a non-empty list of names from: {', '.join(method_names())}")
        for m in self.methods:
            get_method(m)
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ReffAKDError(f"{where}: seeds must be a non-empty list of integers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.methods)) != len(self.methods):
            raise ReffAKDError(f"{where}: methods and seeds must not repeat")
        for m, params in self.method_params.items():
            if m not in DISTILLERS or not isinstance(params, dict):
                raise ReffAKDError(
                    f"{where}: method_params must map method names to objects; {m!r} is not a method or its value "
                    "not an object"
                )
            for key, value in params.items():
                if value is not None and not _is_number(value):
                    raise ReffAKDError(f"{where}: method_params {m} {key} {value!r} must be a number{_hint(value)}")
        self._check_grid(where)
        for item in self.run_items():
            if item.seed == self.seeds[0]:
                self.student_config(item.method, item.seed, point=item.params).validate()
        self.data_config()
        self.optim(self.student, "student")
        if self.teacher_methods():
            if "checkpoint" not in self.teacher:
                self.optim(self.teacher, "teacher")
                from .models import available_models

                if self.teacher.get("model") not in available_models():
                    raise ReffAKDError(
                        f"{where}: teacher model {self.teacher.get('model')!r} is unknown; "
                        f"available: {', '.join(available_models())}"
                    )
        if self.soft_label_methods() and "path" not in self.soft_labels:
            self.soft_label_config()

    def _check_grid(self, where: str) -> None:
        if self.grid is None:
            return
        g = self.grid
        if not isinstance(g, dict) or set(g) != set(GRID_KEYS):
            got = sorted(g) if isinstance(g, dict) else type(g).__name__
            raise ReffAKDError(
                f"{where}: grid must be an object with exactly the keys {', '.join(GRID_KEYS)}, or null; got {got}"
            )
        if (
            not isinstance(g["methods"], list)
            or not g["methods"]
            or not all(isinstance(m, str) for m in g["methods"])
            or len(set(g["methods"])) != len(g["methods"])
        ):
            raise ReffAKDError(
                f"{where}: grid methods must be a non-empty list of distinct method names, got {g['methods']!r}"
            )
        for m in g["methods"]:
            get_method(m)
        if "params" in g and (not isinstance(g["params"], dict) or not g["params"]):
            raise ReffAKDError(
                f"{where}: grid params must map keys to lists of values, e.g. "
                f"{{alpha: [0.1, 0.5], lr: [0.05, 0.1]}}; got {g['params']!r}"
            )
        methods, axes = grid_axes(g)
        types = grid_key_types()
        for key, values in axes.items():
            if key not in types:
                close = difflib.get_close_matches(key, list(types), n=1)
                raise ReffAKDError(
                    f"{where}: grid key {key!r} cannot vary{f' (did you mean {close[0]!r}?)' if close else ''}; "
                    f"allowed: {', '.join(types)}"
                )
            kind = types[key]
            if kind is str:
                ok = (
                    isinstance(values, list)
                    and bool(values)
                    and all(isinstance(v, str) for v in values)
                    and len(set(values)) == len(values)
                )
            else:
                ok = _number_list(values) and (kind is not int or all(isinstance(v, int) for v in values))
            if not ok:
                kind_text = {str: "names", int: "integers"}.get(kind, "finite numbers")
                text = next((v for v in values if isinstance(v, str)), None) if isinstance(values, list) else None
                raise ReffAKDError(
                    f"{where}: grid {key} must be a non-empty list of distinct {kind_text}, got {values!r}{_hint(text)}"
                )
        for m in self.methods:
            run = get_method(m).source.same_seed_run
            if run is not None and run in methods:
                raise ReffAKDError(
                    f"{where}: {m} distils the plain {run} run of its seed; leave {run} out of the grid methods"
                )
        for m in methods:
            for point in grid_points(g):
                try:  # a method without a varied parameter, or a value out of range, is refused here
                    self.student_config(m, self.seeds[0], point=point).validate()
                except ReffAKDError as exc:
                    raise ReffAKDError(f"{where}: grid point {variant_name(m, point)}: {exc}") from None
        names = [folder_name(variant_name(m, p)) for m in methods for p in grid_points(g)]
        if len(set(names)) != len(names):
            raise ReffAKDError(
                f"{where}: grid values too close to tell apart in run names (6 significant digits): "
                + " x ".join(str(v) for v in axes.values())
            )

    def teacher_methods(self) -> set[str]:
        """The methods that distil the comparison's one teacher network (not a run of their own seed)."""
        return {m for m in self.methods if get_method(m).source == TEACHER_SOURCE}

    def soft_label_methods(self) -> set[str]:
        """The methods that train against the comparison's one soft-label artifact."""
        return {m for m in self.methods if get_method(m).needs == "soft_labels"}

    @staticmethod
    def optim(section: dict[str, Any], what: str) -> OptimConfig:
        """The section's optimiser; ``lr: null`` is resolved by the section's ``lr_rule`` (``_resolve_lr``)."""
        keys = set(OptimConfig.__dataclass_fields__)
        if "lr" in section and section["lr"] is None:
            section = {**section, "lr": _resolve_lr(section, what)}
        check_types(OptimConfig, section, what)
        try:
            cfg = OptimConfig(**{k: v for k, v in section.items() if k in keys})
        except TypeError as exc:
            raise ReffAKDError(f"{what} optimiser settings are malformed ({exc})") from None
        if cfg.milestones is not None:
            cfg.milestones = tuple(cfg.milestones)
        cfg.validate()
        return cfg

    def data_config(self) -> DataConfig:
        check_types(DataConfig, self.data, "data")
        try:
            return DataConfig(**self.data)
        except TypeError as exc:
            raise ReffAKDError(
                f"data settings are malformed ({exc}); allowed keys: {', '.join(DataConfig.__dataclass_fields__)}"
            ) from None

    def student_config(self, method: str, seed: int, *, point: Mapping[str, Any] | None = None) -> StudentConfig:
        """One run's config; a grid ``point`` overrides ``method_params`` and the student's optimiser.

        A point that sets epochs drops the section's milestones for the default fractions.
        """
        point = dict(point or {})
        names = parameter_types()
        params = {**self.method_params.get(method, {}), **{k: v for k, v in point.items() if k in names}}
        student = {**self.student, **{k: v for k, v in point.items() if k in OPTIM_GRID_TYPES}}
        if "epochs" in point:
            student["milestones"] = None
        cfg = StudentConfig(method, student.get("model", "lenet5"), self.optim(student, "student"), seed, params)
        cfg.method_params()
        return cfg

    def soft_label_config(self) -> SoftLabelConfig:
        s = self.soft_labels
        check_types(SoftLabelFields, s, "soft_labels")
        cal = Calibration.preset(s.get("preset", "paper"), self.data.get("dataset", "fashion-mnist"))
        for key in ("diagonal_boost", "temperature", "target_own_probability", "equalize_own"):
            if key in s:
                setattr(cal, key, s[key])
                if key == "temperature":
                    cal.target_own_probability = None
                if key == "target_own_probability":
                    cal.temperature = None
        cal.validate()
        return SoftLabelConfig(
            cal,
            s.get("preset", "paper"),
            self.optim(s.get("autoencoder", {}), "autoencoder"),
            s.get("samples_per_class"),
            bool(s.get("augment_embeddings", False)),
            int(s.get("seed", 0)),
        )

    def method_order(self) -> list[str]:
        """The methods in the order they run: the baseline and every run another method distils first, then the
        rest as given, then the methods whose teacher is another run of their seed (tfkd-self after ce, which
        joins the comparison when it is not in it)."""
        methods = list(self.methods)
        for m in list(methods):
            run = get_method(m).source.same_seed_run
            if run is not None and run not in methods:
                methods.insert(0, run)
        first = {get_method(m).source.same_seed_run for m in methods} | {
            m for m in methods if get_method(m).role == "baseline"
        }
        return sorted(methods, key=lambda m: (get_method(m).source.same_seed_run is not None, m not in first))

    def run_items(self) -> list[RunItem]:
        """Every run in ``method_order``, each method over the seeds, a grid method expanded to its variants."""
        methods, _ = grid_axes(self.grid) if self.grid else ([], {})
        points = grid_points(self.grid) if self.grid else []
        items: list[RunItem] = []
        for method in self.method_order():
            if method in methods:
                items += [
                    RunItem(variant_name(method, p), method, s, tuple(p.items())) for p in points for s in self.seeds
                ]
            else:
                items += [RunItem(method, method, s) for s in self.seeds]
        return items


def _without_unset(value: Any) -> Any:
    """A section with its ``None`` ("unset") entries dropped: a folder started before a new option existed resumes."""
    if isinstance(value, dict):
        return {k: _without_unset(v) for k, v in value.items() if v is not None}
    return value


def check_resumable(out: Path, spec: CompareSpec) -> None:
    """A folder started with one spec continues only with the same spec (methods and seeds may grow)."""
    saved_path = out / SPEC_FILE
    if not saved_path.is_file():
        if out.exists() and any(out.iterdir()):
            raise ReffAKDError(f"{out} exists and is not a comparison folder (no {SPEC_FILE}); choose a new --out")
        return
    saved = read_json(saved_path, "comparison spec", "`reffakd compare`")
    now = json.loads(json.dumps(spec.to_dict()))
    for key in now:
        if key not in GROWABLE and _without_unset(saved.get(key)) != _without_unset(now[key]):
            raise ReffAKDError(
                f"{out} was started with another {key!r} ({json.dumps(saved.get(key))[:120]}); "
                f"resume with the same settings (only methods and seeds may change) or choose a new --out"
            )


def compare_report(out: Path, final: bool = True) -> str:
    """``results.md``, ``results.csv`` and, when ``final``, ``accuracy_vs_cost.png``: `reffakd compare`'s report.

    The tables are rewritten after every run, so a stopped comparison shows what has finished; the plot,
    which costs about a second, is drawn once all runs are done.
    """
    return write_compare_report(out, method_names(), plot=final)


def run_compare(
    spec: CompareSpec,
    out: str | Path,
    splits: DataSplits,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    report: Callable[[Path, bool], str] = compare_report,
    config_yaml: str | None = None,
) -> str:
    """Run what is missing, then (re)write the ``report`` (by default compare's); returns its Markdown.

    ``jobs > 1`` trains that many runs at once in worker processes, which load the data again from
    ``spec.data`` (``splits`` serves the shared teacher and soft labels). ``config_yaml``, the
    command line's resolved config, is saved as ``config.yaml`` beside ``spec.json``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ReffAKDError(f"--jobs {jobs} is out of range: it must be at least 1")
    out = Path(out)
    check_resumable(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    saved = read_json(out / SPEC_FILE, "comparison spec", "`reffakd compare`") if (out / SPEC_FILE).is_file() else {}
    merged = spec.to_dict()
    for key in GROWABLE:  # keep what an earlier invocation ran, so the table covers it
        merged[key] = list(dict.fromkeys([*saved.get(key, []), *merged[key]]))
    write_json(out / SPEC_FILE, merged)
    if config_yaml is not None:
        write_text_atomic(out / CONFIG_FILE, config_yaml)

    shared = Shared(
        _soft_labels(spec, out, splits, device, progress, log), _teacher(spec, out, splits, device, progress, log)
    )
    todo = []
    for item in spec.run_items():
        run_dir = run_path(out, item.variant, item.seed)
        if (run_dir / "summary.json").is_file():
            log(f"skip {item.variant} seed {item.seed}: finished ({run_dir})")
        else:
            todo.append(item)
    if jobs == 1 or len(todo) < 2:
        for item in todo:
            train_item(spec, item, out, splits, shared, device=device, progress=progress, log=log)
            report(out, False)
    else:
        _run_parallel(spec, todo, out, device, jobs, log, report)
    md = report(out, True)
    log(md)
    return md


@dataclass
class Shared:
    """What the runs of a comparison share: one soft-label artifact (carrying its cost) and one teacher."""

    soft: SoftLabels | None
    teacher: TeacherNetwork | None


def train_item(
    spec: CompareSpec,
    item: RunItem,
    out: Path,
    splits: DataSplits,
    shared: Shared,
    *,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Train one run into its folder, which appears whole or not at all."""
    method = get_method(item.method)
    teacher = None
    if method.source.same_seed_run is not None:
        run = run_path(out, method.source.same_seed_run, item.seed)
        teacher = load_teacher(run / "best.safetensors", splits, device)
    elif method.needs == "teacher":
        teacher = shared.teacher
        if teacher is not None:
            teacher.seconds = 0.0  # each run counts its own teacher forward passes
    # The report groups runs by variant and selects among a method's variants.
    variant = {"variant": item.variant, "grid": item.params} if item.is_grid else None
    with staged_run_dir(run_path(out, item.variant, item.seed)) as tmp:
        train_student(
            splits,
            spec.student_config(item.method, item.seed, point=item.params),
            tmp,
            device=device,
            soft_labels=shared.soft if method.needs == "soft_labels" else None,
            teacher=teacher,
            name=f"{item.variant}-s{item.seed}",
            progress=progress,
            log=log,
            extra_summary=variant,
        )


# --------------------------------------------------------------------------- several runs at once


def worker_devices(device: torch.device, jobs: int) -> list[str]:
    """One device per worker: each its own GPU, round robin, when several are visible and none was named."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [f"cuda:{k % torch.cuda.device_count()}" for k in range(jobs)]
    return [str(device)] * jobs


def _run_parallel(
    spec: CompareSpec,
    items: list[RunItem],
    out: Path,
    device: torch.device,
    jobs: int,
    log: Callable[[str], None],
    report: Callable[[Path, bool], str],
) -> None:
    """``jobs`` spawned workers (fork is unsafe once torch has started threads); a method that distils another run
    of its seed (tfkd-self) after the runs it distils.

    Workers ignore SIGINT: on Ctrl-C (or any error) the parent stops them, and their unfinished runs
    stay ``.partial`` folders that the next invocation redoes.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = min(jobs, len(items))
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")
    devices = ctx.Queue()
    for k, name in enumerate(worker_devices(device, jobs), 1):
        devices.put((k, name))
    log(
        f"jobs: {jobs} worker processes, {threads} CPU thread(s) each, "
        f"on {', '.join(dict.fromkeys(worker_devices(device, jobs)))}"
    )
    pool = ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(spec, str(out), devices, threads)
    )
    try:
        later = {i for i in items if get_method(i.method).source.same_seed_run is not None}
        for phase in ([i for i in items if i not in later], [i for i in items if i in later]):
            pending = {pool.submit(_worker_run, item) for item in phase}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # re-raises a worker's error here
                report(out, False)
    except BaseException:
        _stop(pool)
        raise
    finally:
        devices.close()
        devices.join_thread()
    pool.shutdown()


def _stop(pool: Any) -> None:
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if stop is not None:
        stop()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


_WORKER: dict[str, Any] = {}


def _worker_init(spec: CompareSpec, out: str, devices: Any, threads: int) -> None:
    """Once per worker: its device and threads, the data, the shared soft labels and teacher (made by the parent)."""
    import signal

    from .data import load_splits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    k, name = devices.get()
    device = torch.device(name)
    quiet = lambda line: None  # noqa: E731
    splits = load_splits(spec.data_config(), quiet)
    shared = Shared(
        _soft_labels(spec, Path(out), splits, device, False, quiet),
        _teacher(spec, Path(out), splits, device, False, quiet),
    )
    _WORKER.update(spec=spec, out=Path(out), splits=splits, shared=shared, device=device, prefix=f"[job {k}] ")


def _worker_run(item: RunItem) -> None:
    w = _WORKER
    log = lambda line: print(w["prefix"] + line, flush=True)  # noqa: E731
    train_item(w["spec"], item, w["out"], w["splits"], w["shared"], device=w["device"], progress=False, log=log)


def run_path(out: Path, variant: str, seed: int) -> Path:
    """``out/runs/<method or variant folder>/seed<k>``."""
    return out / "runs" / folder_name(variant) / f"seed{seed}"


def _soft_labels(
    spec: CompareSpec, out: Path, splits: DataSplits, device: torch.device, progress: bool, log: Callable[[str], None]
) -> SoftLabels | None:
    if not spec.soft_label_methods():
        return None
    if "path" in spec.soft_labels:
        path = Path(spec.soft_labels["path"])
    else:
        folder = out / "softlabels"
        path = folder / SOFT_LABELS_FILE
        if not path.is_file():
            with staged_run_dir(folder) as tmp:
                build_soft_labels(splits, spec.soft_label_config(), tmp, device=device, progress=progress, log=log)
    soft = SoftLabels.load(path)
    soft.check_matches(splits.class_names, f"dataset {splits.dataset}")
    return soft


def _teacher(
    spec: CompareSpec, out: Path, splits: DataSplits, device: torch.device, progress: bool, log: Callable[[str], None]
) -> TeacherNetwork | None:
    if not spec.teacher_methods():
        return None
    if "checkpoint" in spec.teacher:
        return load_teacher(spec.teacher["checkpoint"], splits, device)
    folder = out / "teacher"
    if not (folder / "summary.json").is_file():
        optim = spec.optim(spec.teacher, "teacher")
        cfg = StudentConfig("ce", spec.teacher["model"], optim, seed=int(spec.teacher.get("seed", 0)))
        with staged_run_dir(folder) as tmp:
            train_student(splits, cfg, tmp, device=device, name="teacher", progress=progress, log=log)
    return load_teacher(folder / "best.safetensors", splits, device)
