"""``reffakd compare``: methods x seeds from one spec, resumable, one table of accuracy and cost.

One teacher and one soft-label artifact serve every run; tfkd-self's teacher is the CE student of
the same seed (Tf-KD trains the student once, then distils it into a fresh copy). Each run is
written whole or not at all (``rundir.staged_run_dir``), so a killed comparison resumes by
skipping the runs whose folders exist.
"""

from __future__ import annotations

import json
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
        for m in self.methods:
            self.student_config(m, self.seeds[0]).validate()
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

    def _needs(self, what: str) -> set[str]:
        return {m for m in self.methods if get_method(m).needs == what}

    @staticmethod
    def optim(section: dict[str, Any], what: str) -> OptimConfig:
        keys = set(OptimConfig.__dataclass_fields__)
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

    def student_config(self, method: str, seed: int) -> StudentConfig:
        params = dict(self.method_params.get(method, {}))
        alpha, temperature = params.pop("alpha", None), params.pop("temperature", None)
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


PRESETS: dict[str, Callable[[], CompareSpec]] = {
    # CPU scale (docs/RESULTS.md): LeNet-5 10 epochs; a ResNet-8 teacher (10 epochs) trains in CPU time.
    "cpu": CompareSpec,
    # The paper's Fashion-MNIST protocol, for GPUs: 200 epochs everywhere (LR x0.2 at 60/120/160), a ResNet-18 teacher.
    "paper": lambda: CompareSpec(
        student={"model": "lenet5", **asdict(OptimConfig(epochs=200))},
        teacher={"model": "resnet18", "seed": 0, **asdict(OptimConfig(epochs=200))},
        soft_labels={"preset": "paper", "seed": 0, "autoencoder": asdict(OptimConfig(epochs=200))},
    ),
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
    for method, seed in spec.run_order():
        run_dir = run_path(out, method, seed)
        if (run_dir / "summary.json").is_file():
            log(f"skip {method} seed {seed}: finished ({run_dir})")
            continue
        needs = get_method(method).needs
        source = None
        if method == "tfkd-self":
            source = load_teacher(run_path(out, "ce", seed) / "best.safetensors", splits, device)
        elif needs == "teacher":
            source = teacher
        with staged_run_dir(run_dir) as tmp:
            train_student(splits, spec.student_config(method, seed), tmp, device=device,
                          soft_labels=soft if needs == "soft_labels" else None, soft_target_cost=soft_cost if needs == "soft_labels" else None,
                          teacher=source, name=f"{method}-s{seed}", progress=progress, log=log)
        if isinstance(source, TeacherNetwork):
            source.seconds = 0.0  # each run counts its own teacher forward passes
        write_compare_report(out, ALL_METHODS)
    report = write_compare_report(out, ALL_METHODS)
    log(report)
    return report


def run_path(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / method / f"seed{seed}"


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
