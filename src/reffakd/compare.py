"""``reffakd compare``: methods x seeds from one spec, resumable, one table of accuracy and cost.

One teacher and one soft-label artifact serve every run; tfkd-self's teacher is the CE student of
the same seed (Tf-KD trains the student once, then distils it into a fresh copy). Each run is
written whole or not at all (``rundir.staged_run_dir``), so a killed comparison resumes by
skipping the runs whose folders exist.

An optional ``grid`` runs chosen methods once per (alpha, T) combination, each combination a
*variant* (``reffakd[a=0.5,T=4]``, folder ``runs/reffakd_a0.5_T4/seed<k>``); the report picks one
variant per method by its mean validation top-1, never by test accuracy.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .data import DataSplits
from .distillers import DISTILLERS, get_method, method_params
from .engine import OptimConfig
from .errors import ReffAKDError
from .io import read_json, write_json
from .pipeline import DataConfig, StudentConfig, train_student
from .reports.compare_report import write_compare_report
from .rundir import staged_run_dir
from .softlabels import SOFT_LABELS_FILE, Calibration, SoftLabelConfig, SoftLabels, build_soft_labels, read_soft_label_cost
from .teachers import TeacherNetwork, load_teacher

ALL_METHODS = ("ce", "ls", "tfkd-reg", "tfkd-self", "kd", "dkd", "dkd-aesl", "reffakd")
SPEC_FILE = "spec.json"
# Keys that may change between invocations on the same folder: adding methods or seeds resumes and extends.
GROWABLE = ("methods", "seeds")
GRID_KEYS = ("methods", "alpha", "temperature")


def variant_name(method: str, alpha: float, temperature: float) -> str:
    """The name of one grid point of a method, e.g. ``reffakd[a=0.5,T=4]``."""
    return f"{method}[a={alpha:g},T={temperature:g}]"


def folder_name(variant: str) -> str:
    """A run folder name safe on any disk and in shell globs: ``reffakd[a=0.5,T=4]`` -> ``reffakd_a0.5_T4``.

    A plain method name is its own folder name.
    """
    name = variant.replace("[", "_").replace("]", "").replace("=", "").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


@dataclass(frozen=True)
class RunItem:
    """One student run of a comparison: a method (or one grid variant of it) and a seed."""

    variant: str  # the method's name, or variant_name(...) for a grid point
    method: str
    seed: int
    alpha: float | None = None  # set for grid points only
    temperature: float | None = None

    @property
    def is_grid(self) -> bool:
        return self.variant != self.method


def _number_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            and len(set(value)) == len(value))


def _resolve_lr(section: dict[str, Any], what: str) -> float:
    """``lr: null`` defers to the section's ``lr_rule`` {"default": LR, MODEL: LR, ...} by its ``model``.

    So a preset's per-student learning rate (kd-cifar100: 0.01 for mobilenetv2 and the ShuffleNets,
    else 0.05) follows a student swapped in by a spec; a number given as ``lr`` always wins.
    """
    rule = section.get("lr_rule")
    if not isinstance(rule, dict) or "default" not in rule:
        raise ReffAKDError(f"{what} lr is null and no lr_rule ({{\"default\": LR, MODEL: LR}}) gives one; set lr to a number")
    lr = rule.get(section.get("model"), rule["default"])
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ReffAKDError(f"{what} lr_rule gives {lr!r} for model {section.get('model')!r}; expected a number")
    return float(lr)


@dataclass
class CompareSpec:
    """Everything a comparison runs; saved as ``spec.json`` in its folder."""

    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    data: dict[str, Any] = field(default_factory=lambda: asdict(DataConfig()))
    student: dict[str, Any] = field(default_factory=lambda: {"model": "lenet5", **asdict(OptimConfig(epochs=10))})
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {"checkpoint": PATH} or {"model": NAME, "seed": S, **optimiser}: trained once into <out>/teacher
    teacher: dict[str, Any] = field(default_factory=lambda: {"model": "resnet8", "seed": 0, **asdict(OptimConfig(epochs=10))})
    # {"path": PATH} or {"preset": NAME, "seed": S, "autoencoder": {**optimiser}}: built once into <out>/softlabels
    soft_labels: dict[str, Any] = field(default_factory=lambda: {"preset": "paper", "seed": 0, "autoencoder": asdict(OptimConfig(epochs=5))})
    # {"methods": [...], "alpha": [...], "temperature": [...]}: each listed method that runs, runs once per
    # (alpha, T) and seed as a variant (``variant_name``); null: no grid
    grid: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> "CompareSpec":
        if not isinstance(data, dict):
            raise ReffAKDError(f"{where}: a comparison spec is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ReffAKDError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(cls.__dataclass_fields__)}")
        spec = cls()
        for key, value in data.items():
            default = getattr(spec, key)
            if isinstance(default, dict) and isinstance(value, dict) and key not in ("teacher", "soft_labels", "method_params"):
                value = {**default, **value}
            setattr(spec, key, value)
        spec.validate(where)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ checks, before anything is written
    def validate(self, where: str = "spec") -> None:
        if not self.methods or not all(isinstance(m, str) for m in self.methods):
            raise ReffAKDError(f"{where}: methods must be a non-empty list of names from: {', '.join(ALL_METHODS)}")
        for m in self.methods:
            get_method(m)
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ReffAKDError(f"{where}: seeds must be a non-empty list of integers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.methods)) != len(self.methods):
            raise ReffAKDError(f"{where}: methods and seeds must not repeat")
        for m, params in self.method_params.items():
            if m not in DISTILLERS or not isinstance(params, dict):
                raise ReffAKDError(f"{where}: method_params must map method names to objects; {m!r} is not a method or its value not an object")
        self._check_grid(where)
        for item in self.run_items():
            if item.seed == self.seeds[0]:
                self.student_config(item.method, item.seed, item.alpha, item.temperature).validate()
        self.data_config()
        self.optim(self.student, "student")
        if self._needs("teacher") - {"tfkd-self"}:
            if "checkpoint" not in self.teacher:
                self.optim(self.teacher, "teacher")
                from .models import available_models

                if self.teacher.get("model") not in available_models():
                    raise ReffAKDError(f"{where}: teacher model {self.teacher.get('model')!r} is unknown; available: {', '.join(available_models())}")
        if self._needs("soft_labels") and "path" not in self.soft_labels:
            self.soft_label_config()

    def _check_grid(self, where: str) -> None:
        if self.grid is None:
            return
        g = self.grid
        if not isinstance(g, dict) or set(g) != set(GRID_KEYS):
            got = sorted(g) if isinstance(g, dict) else type(g).__name__
            raise ReffAKDError(f"{where}: grid must be an object with exactly the keys {', '.join(GRID_KEYS)} (or null), got {got}")
        if not isinstance(g["methods"], list) or not g["methods"] or not all(isinstance(m, str) for m in g["methods"]) or len(set(g["methods"])) != len(g["methods"]):
            raise ReffAKDError(f"{where}: grid methods must be a non-empty list of distinct method names, got {g['methods']!r}")
        for key in ("alpha", "temperature"):
            if not _number_list(g[key]):
                raise ReffAKDError(f"{where}: grid {key} must be a non-empty list of distinct finite numbers, got {g[key]!r}")
        for m in g["methods"]:
            get_method(m)
            for a in g["alpha"]:
                for t in g["temperature"]:
                    self.student_config(m, self.seeds[0], a, t).validate()  # a method without alpha or T is refused here
        names = [folder_name(variant_name(m, a, t)) for m in g["methods"] for a in g["alpha"] for t in g["temperature"]]
        if len(set(names)) != len(names):
            raise ReffAKDError(f"{where}: grid values too close to tell apart in run names (6 significant digits): {g['alpha']} x {g['temperature']}")

    def _needs(self, what: str) -> set[str]:
        return {m for m in self.methods if get_method(m).needs == what}

    @staticmethod
    def optim(section: dict[str, Any], what: str) -> OptimConfig:
        """The section's optimiser; ``lr: null`` is resolved by the section's ``lr_rule`` (``_resolve_lr``)."""
        keys = set(OptimConfig.__dataclass_fields__)
        if "lr" in section and section["lr"] is None:
            section = {**section, "lr": _resolve_lr(section, what)}
        try:
            cfg = OptimConfig(**{k: v for k, v in section.items() if k in keys})
        except TypeError as exc:
            raise ReffAKDError(f"{what} optimiser settings are malformed ({exc})") from None
        if cfg.milestones is not None:
            cfg.milestones = tuple(cfg.milestones)
        cfg.validate()
        return cfg

    def data_config(self) -> DataConfig:
        try:
            return DataConfig(**self.data)
        except TypeError as exc:
            raise ReffAKDError(f"data settings are malformed ({exc}); allowed keys: {', '.join(DataConfig.__dataclass_fields__)}") from None

    def student_config(self, method: str, seed: int, alpha: float | None = None, temperature: float | None = None) -> StudentConfig:
        """One run's config; ``alpha``/``temperature`` (a grid point) override ``method_params``."""
        params = dict(self.method_params.get(method, {}))
        own_alpha, own_temperature = params.pop("alpha", None), params.pop("temperature", None)
        alpha = own_alpha if alpha is None else alpha
        temperature = own_temperature if temperature is None else temperature
        cfg = StudentConfig(method, self.student.get("model", "lenet5"), self.optim(self.student, "student"), alpha, temperature, seed, params)
        method_params(method, {**params, "alpha": alpha, "temperature": temperature})
        return cfg

    def soft_label_config(self) -> SoftLabelConfig:
        s = self.soft_labels
        cal = Calibration.preset(s.get("preset", "paper"), self.data.get("dataset", "fashion-mnist"))
        for key in ("diagonal_boost", "temperature", "target_own_probability", "equalize_own"):
            if key in s:
                setattr(cal, key, s[key])
                if key == "temperature":
                    cal.target_own_probability = None
                if key == "target_own_probability":
                    cal.temperature = None
        cal.validate()
        return SoftLabelConfig(cal, s.get("preset", "paper"), self.optim(s.get("autoencoder", {}), "autoencoder"),
                               s.get("samples_per_class"), bool(s.get("augment_embeddings", False)), int(s.get("seed", 0)))

    def run_order(self) -> list[tuple[str, int]]:
        """Every (method, seed); CE first, because tfkd-self distils the CE student of its seed."""
        methods = list(self.methods)
        if "tfkd-self" in methods and "ce" not in methods:
            methods.insert(0, "ce")
        methods.sort(key=lambda m: m != "ce")
        return [(m, s) for m in methods for s in self.seeds]

    def run_items(self) -> list[RunItem]:
        """Every run in order: ``run_order``'s, a grid method expanded to its variants (each over the seeds)."""
        grid = self.grid or {}
        items: list[RunItem] = []
        for method in dict.fromkeys(m for m, _ in self.run_order()):
            if method in grid.get("methods", ()):
                items += [RunItem(variant_name(method, a, t), method, s, a, t)
                          for a in grid["alpha"] for t in grid["temperature"] for s in self.seeds]
            else:
                items += [RunItem(method, method, s) for s in self.seeds]
        return items


def paper_optim(epochs: int = 200) -> dict[str, Any]:
    """The notebooks' optimiser for students and the autoencoder: SGD lr 0.1, momentum 0.9, wd 5e-4,
    batch 128, 200 epochs, LR x0.2 at epochs 60/120/160."""
    return asdict(OptimConfig(epochs=epochs, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, milestones=(60, 120, 160), gamma=0.2))


def kd_protocol_optim() -> dict[str, Any]:
    """The common CIFAR-100 KD protocol (CRD, DKD): 240 epochs, batch 64, lr 0.05, x0.1 at 150/180/210, wd 5e-4."""
    return asdict(OptimConfig(epochs=240, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(150, 180, 210), gamma=0.1))


# The paper's sweep: T in {20, 10, 5, 1} x alpha in {0.1, ..., 0.9}, for ReffAKD.
PAPER_GRID: dict[str, list[Any]] = {"methods": ["reffakd"], "alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                    "temperature": [20.0, 10.0, 5.0, 1.0]}
# The common protocol's learning rate: 0.05, but 0.01 for the light students (CRD's rule).
KD_CIFAR100_LR_RULE = {"default": 0.05, "mobilenetv2": 0.01, "shufflenetv1": 0.01, "shufflenetv2": 0.01}


def paper_preset(dataset: str, student: str, teacher: str) -> CompareSpec:
    """One of the paper's settings (docs/METHOD.md's table), with the notebooks' schedule everywhere and the grid."""
    return CompareSpec(
        data={**asdict(DataConfig()), "dataset": dataset},
        student={"model": student, **paper_optim()},
        teacher={"model": teacher, "seed": 0, **paper_optim()},
        soft_labels={"preset": "paper", "seed": 0, "autoencoder": paper_optim()},
        grid={k: list(v) for k, v in PAPER_GRID.items()},
    )


def kd_cifar100_preset() -> CompareSpec:
    """resnet32x4 -> resnet8x4 under the common CIFAR-100 KD protocol; KD's alpha 0.9, T 4 (CE weight 0.1), DKD's beta 8."""
    return CompareSpec(
        data={**asdict(DataConfig()), "dataset": "cifar100"},
        student={"model": "resnet8x4", **kd_protocol_optim(), "lr": None, "lr_rule": dict(KD_CIFAR100_LR_RULE)},
        teacher={"model": "resnet32x4", "seed": 0, **kd_protocol_optim()},
        soft_labels={"preset": "paper", "seed": 0, "autoencoder": paper_optim()},
        method_params={"kd": {"alpha": 0.9, "temperature": 4.0}, "reffakd": {"alpha": 0.9, "temperature": 4.0},
                       "dkd": {"beta": 8.0}, "dkd-aesl": {"beta": 8.0}},
    )


PRESETS: dict[str, Callable[[], CompareSpec]] = {
    # CPU scale (docs/RESULTS.md): LeNet-5 10 epochs; a ResNet-8 teacher (10 epochs) trains in CPU time. No grid.
    "cpu": CompareSpec,
    # The paper's three settings, for GPUs (docs/DATASETS.md lists every setting).
    "paper-fashion-mnist": lambda: paper_preset("fashion-mnist", "lenet5", "resnet18"),
    "paper": lambda: paper_preset("fashion-mnist", "lenet5", "resnet18"),  # alias of paper-fashion-mnist
    "paper-cifar100": lambda: paper_preset("cifar100", "resnet18", "resnet50"),
    "paper-tinyimagenet": lambda: paper_preset("tiny-imagenet", "resnet18", "resnet50"),
    "kd-cifar100": kd_cifar100_preset,
}
# One line each, for `reffakd compare --help`.
PRESET_HELP = {
    "cpu": "Fashion-MNIST, LeNet-5 10 epochs, ResNet-8 teacher 10 epochs, autoencoder 5 epochs, no grid (CPU scale)",
    "paper-fashion-mnist": "Fashion-MNIST, LeNet-5 student, ResNet-18 teacher, 200 epochs each (SGD 0.1, x0.2 at 60/120/160), "
                           "autoencoder 200 epochs, ReffAKD over the grid alpha 0.1..0.9 x T 20/10/5/1",
    "paper": "alias of paper-fashion-mnist",
    "paper-cifar100": "as paper-fashion-mnist on CIFAR-100 with a ResNet-18 student and a ResNet-50 teacher",
    "paper-tinyimagenet": "as paper-cifar100 on Tiny ImageNet (64x64; give --data-dir)",
    "kd-cifar100": "CIFAR-100, resnet32x4 -> resnet8x4, 240 epochs, batch 64, lr 0.05 (0.01 for mobilenetv2/shufflenets), "
                   "x0.1 at 150/180/210; KD alpha 0.9 T 4, DKD beta 8",
}


def check_resumable(out: Path, spec: CompareSpec) -> None:
    """A folder started with one spec continues only with the same spec (methods and seeds may grow)."""
    saved_path = out / SPEC_FILE
    if not saved_path.is_file():
        if out.exists() and any(out.iterdir()):
            raise ReffAKDError(f"{out} exists and is not a comparison folder (no {SPEC_FILE}); choose a new --out")
        return
    try:
        saved = read_json(saved_path)
    except (OSError, ValueError) as exc:
        raise ReffAKDError(f"{saved_path} is malformed ({exc}); it is written by `reffakd compare`") from None
    now = json.loads(json.dumps(spec.to_dict()))
    for key in now:
        if key not in GROWABLE and saved.get(key) != now[key]:
            raise ReffAKDError(f"{out} was started with another {key!r} ({json.dumps(saved.get(key))[:120]}); "
                               f"resume with the same settings (only methods and seeds may change) or choose a new --out")


def run_compare(
    spec: CompareSpec,
    out: str | Path,
    splits: DataSplits,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> str:
    """Run what is missing, then (re)write ``results.md``, ``results.csv`` and ``accuracy_vs_cost.png``; returns the Markdown."""
    out = Path(out)
    check_resumable(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    saved = read_json(out / SPEC_FILE) if (out / SPEC_FILE).is_file() else {}
    merged = spec.to_dict()
    for key in GROWABLE:  # keep what an earlier invocation ran, so the table covers it
        merged[key] = list(dict.fromkeys([*saved.get(key, []), *merged[key]]))
    write_json(out / SPEC_FILE, merged)

    soft, soft_cost = _soft_labels(spec, out, splits, device, progress, log)
    teacher = _teacher(spec, out, splits, device, progress, log)
    for item in spec.run_items():
        method, seed = item.method, item.seed
        run_dir = run_path(out, item.variant, seed)
        if (run_dir / "summary.json").is_file():
            log(f"skip {item.variant} seed {seed}: finished ({run_dir})")
            continue
        needs = get_method(method).needs
        source = None
        if method == "tfkd-self":
            source = load_teacher(run_path(out, "ce", seed) / "best.safetensors", splits, device)
        elif needs == "teacher":
            source = teacher
        with staged_run_dir(run_dir) as tmp:
            summary = train_student(splits, spec.student_config(method, seed, item.alpha, item.temperature), tmp, device=device,
                                    soft_labels=soft if needs == "soft_labels" else None, soft_target_cost=soft_cost if needs == "soft_labels" else None,
                                    teacher=source, name=f"{item.variant}-s{seed}", progress=progress, log=log)
            if item.is_grid:  # the report groups runs by variant and selects among a method's variants
                write_json(tmp / "summary.json", {**summary, "variant": item.variant, "grid": {"alpha": item.alpha, "temperature": item.temperature}})
        if isinstance(source, TeacherNetwork):
            source.seconds = 0.0  # each run counts its own teacher forward passes
        write_compare_report(out, ALL_METHODS)
    report = write_compare_report(out, ALL_METHODS)
    log(report)
    return report


def run_path(out: Path, variant: str, seed: int) -> Path:
    """``out/runs/<method or variant folder>/seed<k>``."""
    return out / "runs" / folder_name(variant) / f"seed{seed}"


def _soft_labels(spec: CompareSpec, out: Path, splits: DataSplits, device: torch.device, progress: bool, log: Callable[[str], None]) -> tuple[SoftLabels | None, dict[str, Any] | None]:
    if not spec._needs("soft_labels"):
        return None, None
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
    return soft, read_soft_label_cost(path)


def _teacher(spec: CompareSpec, out: Path, splits: DataSplits, device: torch.device, progress: bool, log: Callable[[str], None]) -> TeacherNetwork | None:
    if not spec._needs("teacher") - {"tfkd-self"}:
        return None
    if "checkpoint" in spec.teacher:
        return load_teacher(spec.teacher["checkpoint"], splits, device)
    folder = out / "teacher"
    if not (folder / "summary.json").is_file():
        cfg = StudentConfig("ce", spec.teacher["model"], spec.optim(spec.teacher, "teacher"), seed=int(spec.teacher.get("seed", 0)))
        with staged_run_dir(folder) as tmp:
            train_student(splits, cfg, tmp, device=device, name="teacher", progress=progress, log=log)
    return load_teacher(folder / "best.safetensors", splits, device)
