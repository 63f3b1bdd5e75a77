"""The run configuration: one tree of dataclasses from which every flag and every config key comes.

Each command is a list of groups of ``settings.opt`` fields (or the registered methods' parameters); ``Resolved`` turns
the flat mapping of keys that ``cli.py`` resolves into the typed objects the library takes, each value validated once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .data import DataConfig
from .deploy.commands import BenchOptions, EvaluateOptions, ExportOptions, ExportOutput, PredictOptions
from .distillers.registry import cli_catalog
from .engine.optim import STUDENT_SCHEDULE, OptimConfig
from .engine.speed import SpeedOptions
from .errors import ReffAKDError
from .recipes import recipe_names
from .settings import Option, opt, options
from .softlabels.options import SoftLabelSpec, soft_label_config
from .spec import RunSpec, with_epochs

if TYPE_CHECKING:
    from .softlabels import SoftLabelConfig

T = TypeVar("T")
RUN_AE_EPOCHS, RUN_EPOCHS = 5, 15  # `reffakd run` finishes in about 5 minutes on 2 CPU cores


@dataclass
class Output:
    out: str | None = opt(None, "new run folder (required: here or as out: in --config)")


@dataclass
class Console:
    device: str = opt("auto", "auto (CUDA if available), cpu, cuda or cuda:N")
    progress: bool = opt(True, "no progress bars", flag="no-progress", negate=True)
    plots: bool = opt(
        True, "no PNG figures (curves, soft labels, reconstructions, comparison plots): each takes 0.1 to 0.3 s of "
        "CPU, most of a short run's overhead", flag="no-plots", negate=True,
    )  # fmt: skip


@dataclass
class EngineOptions:
    """The training loop's robustness options (its speed options: ``SpeedOptions``)."""

    resume: bool = opt(
        False, "continue an interrupted run from the resume checkpoint in OUT.partial (same weights as an "
        "uninterrupted run)",
    )  # fmt: skip
    tensorboard: bool = opt(False, "also log metrics to OUT/tensorboard (needs the tensorboard package)")
    sync_batchnorm: bool = opt(
        True, "under torchrun, keep batch-norm statistics per process", flag="no-sync-bn", negate=True
    )


@dataclass
class Seed:
    seed: int = opt(0, "seed of the weights' initialisation and the data order")


@dataclass
class Student:
    model: str = opt("lenet5", "student architecture: a registry name (docs/MODELS.md) or timm/NAME (reffakd[timm])")


@dataclass
class TrainInputs:
    method: str = opt(
        "ce", "training method: a named one or a loss form with a source, FORM+SOURCE (`reffakd methods`, "
        "docs/METHODS.md)", choices=lambda: cli_catalog()["choices"], metavar="METHOD",
    )  # fmt: skip
    soft_labels: str | None = opt(
        None, "soft_labels.safetensors made by `reffakd softlabels` (methods whose soft targets are autoencoder "
        "soft labels)", metavar="PATH",
    )  # fmt: skip
    teacher: str | None = opt(
        None, "a checkpoint made by `reffakd train` (methods with a teacher; tfkd-self: the trained CE student)",
        metavar="PATH",
    )  # fmt: skip


@dataclass
class CompareOptions:
    preset: str = opt("cpu", "the recipe to start from (docs/CONFIG.md describes each)", choices=recipe_names)
    spec: str | None = opt(None, "a JSON or YAML spec whose keys override the preset (docs/CONFIG.md)")
    methods: list[str] | None = opt(None, "comma-separated method names")
    seeds: list[int] | None = opt(None, "comma-separated student seeds, e.g. 0,1,2")
    epochs: int | None = opt(None, "student epochs")
    teacher: str | None = opt(None, "use this teacher checkpoint (made by `reffakd train`) instead of training one")
    teacher_model: str | None = opt(
        None, "architecture of the teacher trained for the methods that need one (a registry name or timm/NAME)"
    )
    teacher_epochs: int | None = opt(None, "epochs of the teacher trained for the methods that need one")
    soft_labels: str | None = opt(None, "use this soft_labels.safetensors instead of building one")
    ae_epochs: int | None = opt(None, "autoencoder epochs of the soft labels built for the methods that need them")
    vary: list[str] | None = opt(
        None, "a grid axis KEY=V1,V2 (repeat for more): sets that key's values in the spec's grid, whose methods "
        "default to the methods that run and take every varied key; keys: any method parameter or lr, weight_decay, "
        "batch_size, epochs, "
        "momentum, schedule, gamma", metavar="KEY=V1,V2", append=True,
    )  # fmt: skip
    no_grid: bool = opt(
        False, "drop the preset's or spec's grid: each method runs once per seed at its own setting (--vary still "
        "starts a grid)",
    )  # fmt: skip
    jobs: int = opt(
        1, "runs trained at once, each in its own process with its share of the CPU threads, or its own GPU when "
        "several are visible",
    )  # fmt: skip


@dataclass
class CostOptions:
    preset: str = opt(
        "paper-cifar100",
        "the recipe whose models, images and epochs are counted (docs/CONFIG.md)",
        choices=recipe_names,
    )
    json: bool = opt(False, "print JSON instead of the Markdown table")


# --------------------------------------------------------------------------- commands as groups of options


@dataclass(frozen=True)
class Group:
    """One node of a command's tree: a dataclass's options (``cls``), or the method parameters (``cls=None``)."""

    name: str  # the attribute of ``Resolved`` that holds the built object
    title: str
    cls: type | None
    prefix: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    unset: bool = False  # every default None: the preset's value unless given; built as the mapping of those given
    without: tuple[str, ...] = ()  # fields this command does not take

    def options(self) -> list[Option]:
        if self.cls is None:
            return method_options()
        opts = [o for o in options(self.cls, self.prefix, self.defaults) if o.field not in self.without]
        if self.unset:  # a flag (store_true) stays one, False meaning "not given"; every other option defaults to None
            opts = [o if o.kind is bool and not o.optional else replace(o, optional=True, default=None) for o in opts]
        return opts


def method_options() -> list[Option]:
    """One flag per parameter name of any registered method, typed and explained from the registry."""
    types = {"int": int, "float": float}
    return [Option(key, key, types[p["type"]], types[p["type"]], True, None, p["help"], p["short"])
            for key, p in cli_catalog()["params"].items()]  # fmt: skip


OUT = Group("output", "output", Output)
DATA = Group("data", "data", DataConfig)
CONSOLE = Group("console", "console", Console)
SEED = Group("seed", "seed", Seed)
ENGINE = Group("engine", "engine", EngineOptions)
SPEED = Group("speed", "speed (docs/RESULTS.md has their measured effect)", SpeedOptions)
METHOD = Group("method_params", "method parameters (default: the method's own, docs/METHODS.md)", None)


def _soft_groups(ae_epochs: int) -> list[Group]:
    return [
        Group("soft", "soft labels", SoftLabelSpec),
        Group("ae_optim", "autoencoder optimisation", OptimConfig, "ae_", {"epochs": ae_epochs}),
    ]


def _student_groups(epochs: int) -> list[Group]:
    optim = Group("optim", "student optimisation", OptimConfig, "", {"epochs": epochs, "schedule": STUDENT_SCHEDULE})
    return [Group("student", "student", Student), SEED, METHOD, optim]


# compare and sweep: the same options (sweep requires a grid and writes another table).
COMPARISON = [
    OUT,
    Group("compare", "comparison", CompareOptions),
    Group("data", "data (default: the preset's)", DataConfig, unset=True),
    # no engine options: a comparison always continues its folder; torchrun runs `reffakd train`
    Group("speed", "speed (default: the spec's; every student and the teacher)", SpeedOptions, unset=True),
    CONSOLE,
]
DEPLOY_CONSOLE = replace(CONSOLE, without=("progress", "plots"))
TRAINING = [ENGINE, SPEED, CONSOLE]  # how a student trains: run and train
# The autoencoder's engine and speed options: resume and cuda_graph.
AE_ENGINE = [
    replace(ENGINE, without=("tensorboard", "sync_batchnorm")),
    replace(SPEED, without=("amp", "channels_last", "compile", "compile_mode")),
]
COMMANDS: dict[str, tuple[str, list[Group]]] = {
    "run": (
        "the whole pipeline: soft labels, a CE baseline and a ReffAKD student, one summary",
        [OUT, DATA, *_soft_groups(RUN_AE_EPOCHS), *_student_groups(RUN_EPOCHS), *TRAINING],
    ),
    "softlabels": (
        "train the autoencoder and build soft labels, diagnostics and plots",
        [OUT, SEED, DATA, *_soft_groups(10), *AE_ENGINE, CONSOLE],
    ),
    "train": (
        "train one student",
        [OUT, Group("inputs", "method and its soft targets", TrainInputs), DATA, *_student_groups(30), *TRAINING],
    ),
    "compare": ("methods x seeds side by side: accuracy and cost in one table (resumable)", COMPARISON),
    "sweep": (
        "a grid over any method parameter or optimiser key, one table sorted by validation accuracy (resumable)",
        COMPARISON,
    ),
    "cost": (
        "FLOPs of the soft targets (autoencoder or teacher) and the student at a recipe's scale, computed from the "
        "models' FLOP counts; trains nothing",
        [Group("cost", "cost", CostOptions)],
    ),
    "evaluate": (
        "top-1/top-5 of a checkpoint or an exported model, on a dataset split or a labelled image folder",
        [Group("evaluate", "checkpoint", EvaluateOptions), DATA, replace(CONSOLE, without=("plots",))],
    ),
    "export": (
        "a checkpoint to ONNX and torch.export, normalisation inside, preprocessing in JSON beside it",
        [Group("output", "output", ExportOutput), Group("export", "export", ExportOptions)],  # device-free
    ),
    "predict": (
        "top-k classes of image files or folders, from a checkpoint or an exported ONNX model",
        [Group("predict", "predict", PredictOptions), DEPLOY_CONSOLE],
    ),
    "bench": (
        "inference cost: parameters, file size, FLOPs, latency and throughput in PyTorch and onnxruntime",
        [Group("bench", "bench", BenchOptions), DEPLOY_CONSOLE],
    ),
}


CONFIG_COMMANDS = ("run", "softlabels", "train", "compare", "sweep")
# Options that exclude each other: a fixed soft-label temperature, or one solved for an own-class probability.
EXCLUSIVE = (("soft_temperature", "target_own_prob"),)


def command_options(command: str) -> dict[str, Option]:
    """Key -> option of every flag of ``command``, in the order of its groups."""
    return {o.key: o for g in COMMANDS[command][1] for o in g.options()}


def defaults(command: str) -> dict[str, Any]:
    return {k: o.default for k, o in command_options(command).items()}


# --------------------------------------------------------------------------- flat values -> typed objects


@dataclass(frozen=True)
class ConfigSpec:
    """The spec sections of a compare/sweep config file; ``after_spec``: --spec came from the command line (it wins)."""

    where: str
    sections: dict[str, Any]
    after_spec: bool


class GroupView(Generic[T]):
    """One group of a command's options as its typed object (``Resolved.data``: a ``DataConfig``), built when read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, cfg: Resolved, owner: type | None = None) -> T:
        return cfg.group(self.name)


@dataclass
class Resolved:
    """A command's configuration, typed: one attribute per group, built from the flat key -> value mapping when read
    (``cfg.data``: the group ``data``, a ``DataConfig``; compare's unset groups: the mapping of the keys given)."""

    command: str
    values: dict[str, Any]  # every key's final value: what config.yaml records
    argv: list[str] = field(default_factory=list)  # the command line, for the header of config.yaml
    config_spec: ConfigSpec | None = None  # compare, sweep: spec sections given in --config

    # The groups (``Group.name``) of the commands that have them, typed: compare's unset groups are mappings.
    output = GroupView[Output]()
    console = GroupView[Console]()
    data = GroupView[DataConfig]()
    engine = GroupView[EngineOptions]()
    speed = GroupView[SpeedOptions]()
    soft = GroupView[SoftLabelSpec]()
    ae_optim = GroupView[OptimConfig]()
    student = GroupView[Student]()
    seed = GroupView[Seed]()
    optim = GroupView[OptimConfig]()
    method_params = GroupView[dict[str, Any]]()
    inputs = GroupView[TrainInputs]()
    compare = GroupView[CompareOptions]()
    cost = GroupView[CostOptions]()
    evaluate = GroupView[EvaluateOptions]()
    export = GroupView[ExportOptions]()
    predict = GroupView[PredictOptions]()
    bench = GroupView[BenchOptions]()

    def group(self, name: str) -> Any:
        """The group ``name`` of this command, built and validated."""
        for g in COMMANDS[self.command][1]:
            if g.name == name:
                return self._build(g)
        raise AttributeError(f"reffakd {self.command} has no {name} options")

    def _build(self, g: Group) -> Any:
        opts = g.options()
        if g.cls is None or g.unset:  # the method parameters and compare's groups: the options given (not default)
            return {o.field: o.value(v) for o in opts if (v := self.values.get(o.key, o.default)) != o.default}
        kw = {o.field: o.value(self.values[o.key]) for o in opts}
        if kw.get("milestones") is not None:
            kw["milestones"] = tuple(kw["milestones"])
        obj = g.cls(**kw)
        try:
            if isinstance(obj, OptimConfig):
                obj.validate()
            if isinstance(obj, SpeedOptions):  # its one line names the flags, not a spec's section
                obj.check()
        except ReffAKDError as exc:
            raise prefixed(exc, g.prefix) from None
        return obj

    def soft_labels(self) -> SoftLabelSpec:
        """The soft-label flags as a spec's section, with ``--seed`` and the autoencoder's optimiser (``--ae-*``); a
        fixed temperature without ``--equalize-own-prob`` does not equalise."""
        soft, equalize = self.soft, self.soft.equalize_own_prob
        if equalize is None and soft.soft_temperature is not None:
            equalize = False
        return replace(soft, seed=self.seed.seed, autoencoder=asdict(self.ae_optim), equalize_own_prob=equalize)

    def soft_label_config(self) -> SoftLabelConfig:
        return soft_label_config(self.soft_labels(), self.data.dataset)

    def one_seed_spec(self, methods: list[str], method_params: dict[str, dict[str, Any]], **sections: Any) -> RunSpec:
        """``train`` and ``run`` as what they are: a spec of one seed, run by the same runner as ``compare``."""
        student = {"model": self.student.model, **asdict(self.optim)}
        spec = RunSpec(methods=methods, seeds=[self.seed.seed], data=self.data, student=student,
                       method_params=method_params, grid=None, speed=self.speed, **sections)  # fmt: skip
        spec.validate("the command line")
        return spec

    def train_spec(self) -> RunSpec:
        """``train``: its method with the parameters given, its soft labels or teacher as given."""
        inputs, method = self.inputs, self.inputs.method
        sections: dict[str, Any] = {}
        if inputs.soft_labels:
            sections["soft_labels"] = SoftLabelSpec(path=inputs.soft_labels)
        if inputs.teacher:
            sections["teacher"] = {"checkpoint": inputs.teacher}
        return self.one_seed_spec([method], {method: self.method_params}, **sections)

    def run_spec(self) -> RunSpec:
        """``run``: plain cross-entropy and ReffAKD (the parameters given are ReffAKD's), soft labels built here."""
        return self.one_seed_spec(["ce", "reffakd"], {"reffakd": self.method_params}, soft_labels=self.soft_labels())


def prefixed(exc: ReffAKDError, prefix: str) -> ReffAKDError:
    """The error of a group whose keys carry a prefix (``ae_lr``), naming its keys as they were typed."""
    if not prefix:
        return exc
    text = str(exc)
    for param in exc.params:
        text = re.sub(rf"(?<![\w.]){re.escape(param)}\b", prefix + param, text)
    return ReffAKDError(text, params=tuple(prefix + p for p in exc.params))


# --------------------------------------------------------------------------- compare and sweep: the spec

# compare/sweep options folded into the spec: the saved config holds the spec's sections instead.
SPEC_KEYS = {o.key for g in COMPARISON if g.name in ("compare", "data", "speed") for o in g.options()}
SPEC_KEYS -= {"preset", "jobs"}


def _merge_section(key: str, current: Any, value: Any) -> Any:
    """A spec file's section updates the preset's, key by key; a teacher checkpoint or a soft-label path replaces it."""
    if not isinstance(value, dict) or not isinstance(current, dict) or key not in ("data", "student", "teacher",
                                                                                   "soft_labels", "speed"):  # fmt: skip
        return value
    if (key == "teacher" and "checkpoint" in value) or (key == "soft_labels" and "path" in value):
        return value
    return {**{k: v for k, v in current.items() if k not in ("checkpoint", "path")}, **value}


def _axis(text: str) -> tuple[str, list[Any]]:
    """``alpha=0.1,0.5``: one grid key and its values (numbers where they read as numbers)."""

    def value(item: str) -> int | float | str:
        for kind in (int, float):
            try:
                return kind(item)
            except ValueError:
                pass
        return item

    key, sep, values = text.partition("=")
    items = [value(v.strip()) for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not items:
        raise ReffAKDError(f"vary {text!r} must be KEY=V1,V2,..., e.g. alpha=0.1,0.5,0.9", params=("vary",))
    return key.strip().replace("-", "_"), items


def _vary(spec: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """The spec's grid with the ``--vary`` axes set; a new grid's methods: those that run and take every varied method
    parameter (optimiser keys apply to every method)."""
    from .distillers import get_method, parameter_fields

    vary = [_axis(text) for text in texts]
    keys = [k for k, _ in vary]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ReffAKDError(f"vary {twice[0]} is given twice; give each key once with all its values", params=("vary",))
    grid = spec.get("grid")
    if grid is None:
        wanted = set(keys) & set(parameter_fields())
        takers = [m for m in spec["methods"] if wanted <= set(get_method(m).params.info())]
        if not takers:
            raise ReffAKDError(
                f"vary {', '.join(sorted(wanted))}: none of the methods that run ({', '.join(spec['methods'])}) "
                "takes it; add a method that does",
                params=("vary",),
            )
        grid = {"methods": takers, "params": {}}
    return {"methods": grid["methods"], "params": {**grid["params"], **dict(vary)}}


def compare_spec(cfg: Resolved) -> RunSpec:
    """The preset's recipe, then the spec file and the config file's spec sections, then the flags: each later one wins
    (a ``--spec`` typed on the command line comes after the config file's sections; one named in it, before them)."""
    from .recipes import load_recipe
    from .settings import read_mapping, unknown_key

    v = cfg.values
    preset = v["preset"]
    spec = RunSpec.from_dict(load_recipe(preset), f"preset {preset}").to_dict()
    layers: list[tuple[str, dict[str, Any]]] = []
    if v["spec"]:
        where = f"--spec {v['spec']}"
        layers.append((where, read_mapping(v["spec"], where)))
    sections = cfg.config_spec
    if sections is not None:
        layers.insert(0 if sections.after_spec else len(layers), (sections.where, sections.sections))
    for where, overrides in layers:
        for key, value in overrides.items():
            if key not in spec:
                raise unknown_key(where, key, spec)
            spec[key] = _merge_section(key, spec[key], value)
    spec["data"] = {**spec["data"], **cfg.data}  # the data flags given; otherwise the preset's (or the spec file's)
    spec.update({key: v[key] for key in ("methods", "seeds") if v[key] is not None})
    if v["epochs"] is not None:
        spec["student"] = with_epochs(spec["student"], v["epochs"])
    if v["teacher"]:
        spec["teacher"] = {"checkpoint": v["teacher"]}
    else:
        if v["teacher_model"]:
            spec["teacher"] = {**spec["teacher"], "model": v["teacher_model"]}
        if v["teacher_epochs"] is not None:
            spec["teacher"] = with_epochs(spec["teacher"], v["teacher_epochs"])
    speed = cfg.speed
    if speed:
        SpeedOptions(**speed).check()  # the flags' own errors name the flags
        spec["speed"] = {**(spec.get("speed") or {}), **speed}
    if v["soft_labels"]:
        spec["soft_labels"] = {"path": v["soft_labels"]}
    elif v["ae_epochs"] is not None:
        autoencoder = with_epochs(spec["soft_labels"].get("autoencoder", {}), v["ae_epochs"])
        spec["soft_labels"] = {**spec["soft_labels"], "autoencoder": autoencoder}
    where = sections.where if sections is not None else f"--spec {v['spec']}" if v["spec"] else f"preset {preset}"
    if v["no_grid"]:
        spec["grid"] = None
    compare = RunSpec.from_dict(spec, where)  # what came before the axes is blamed on where it came from
    if v["vary"]:
        spec = compare.to_dict()
        spec["grid"] = _vary(spec, v["vary"])
        try:
            compare = RunSpec.from_dict(spec, "vary")  # the rest on the axes typed
        except ReffAKDError as exc:
            raise ReffAKDError(f"--{exc}") from None  # the flag, not each word "vary"
    _check_comparison(cfg, compare)
    return compare


def _check_comparison(cfg: Resolved, spec: Any) -> None:
    """What compare and sweep refuse before anything is written, beyond the spec's own checks."""
    jobs = cfg.values["jobs"]
    if jobs < 1:
        raise ReffAKDError(f"jobs {jobs} is out of range: it must be at least 1", params=("jobs",))
    if cfg.command == "sweep":
        if spec.grid is None:
            raise ReffAKDError(
                "sweep needs a grid: give grid: {methods: [...], params: {KEY: [values]}} in --config or --spec, "
                "or --vary KEY=V1,V2 (docs/CONFIG.md)"
            )
        methods = spec.grid.methods
        if not set(methods) & set(spec.methods):
            raise ReffAKDError(
                f"sweep: none of the grid's methods ({', '.join(methods)}) is among the methods that run "
                f"({', '.join(spec.methods)}); add them to methods"
            )


def resolved_config(cfg: Resolved, checked: Any) -> dict[str, Any]:
    """Every key's final value (compare, sweep: the options not folded into ``checked``, their spec, then its keys)."""
    if cfg.command not in ("compare", "sweep"):
        return cfg.values
    return {**{k: v for k, v in cfg.values.items() if k not in SPEC_KEYS}, **checked.to_dict()}


def check_command(cfg: Resolved) -> Any:
    """The checks a command makes before it touches the disk; returns its spec (softlabels: its soft-label config)."""
    if cfg.command in ("compare", "sweep"):
        return compare_spec(cfg)
    check = {"run": Resolved.run_spec, "softlabels": Resolved.soft_label_config, "train": Resolved.train_spec}
    return check[cfg.command](cfg) if cfg.command in check else None
