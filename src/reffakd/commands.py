"""What each ``reffakd`` command does with its typed configuration (``runconfig.Resolved``): every check it can make
before anything is written, then one run folder, staged as ``OUT.partial``."""

from __future__ import annotations

import inspect
import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .data import DATASETS, DataConfig, DataSplits, load_splits
from .data.image_folder import unlabelled_images
from .deploy import commands as deploy
from .distillers import DISTILLERS, get_method, method_names
from .engine import TrainOptions, distributed
from .engine.distributed import pick_device
from .engine.logsinks import require_tensorboard
from .engine.speed import SpeedOptions
from .errors import ReffAKDError
from .io import write_text_atomic
from .models import ConvAutoencoder, create_model
from .models.timm_models import UnknownModelError
from .pipeline import check_cuda_graph, check_soft_labels_fit
from .pipeline_run import run_pipeline
from .recipes import load_recipe
from .runconfig import Resolved
from .rundir import LOCK, check_free, check_new_run_dir, check_partial, check_writable, partial_path, staged_run_dir
from .runner import Shared, run_one
from .softlabels import SOFT_LABELS_FILE, SoftLabels, build_soft_labels
from .softlabels.builder import check_soft_label_data
from .sources import load_teacher
from .spec import NetworkSpec, RunItem, RunSpec, TeacherCheckpoint


class RunLog:
    """Print each line and keep it in ``log.txt`` of the run folder once that folder exists."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        if self.path is None:
            self.lines.append(line)
        else:
            with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as f:
                f.write(line + "\n")

    def attach(self, run_dir: Path, config_yaml: str) -> None:
        """Start the folder's log with the lines so far, and save the resolved config as ``config.yaml``."""
        write_text_atomic(run_dir / "config.yaml", config_yaml)
        self.path = run_dir / "log.txt"
        self.path.write_text("".join(line + "\n" for line in self.lines), encoding="utf-8", errors="surrogateescape")


def load_fitting(models: Sequence[str], autoencoder: bool, data: Any, log: Callable[[str], None]) -> DataSplits:
    """The data, loaded between two checks on the meta device (no memory, no weights) that the ``models`` and the soft
    labels' ``autoencoder`` take its input: before loading, at ``image_size`` or the loader's default (imagefolder's is
    unknown), so that no folder exists yet; after, at the data's own."""
    where = f"image_size {data.image_size}" if data.image_size is not None else f"dataset {data.dataset}"

    def check(channels: int, size: tuple[int, int], classes: int) -> None:
        builds = [(partial(create_model, name, num_classes=classes, in_channels=channels, image_size=size),
                   "choose a larger image_size or another model") for name in models]  # fmt: skip
        if autoencoder:
            advice = "the soft labels need it: choose an image_size that is a multiple of 8"
            builds.append((partial(ConvAutoencoder, channels, size), advice))
        with torch.device("meta"):
            for build, advice in builds:
                try:
                    build()
                except UnknownModelError:
                    raise
                except ReffAKDError as exc:
                    raise ReffAKDError(f"{exc} ({where}); {advice}", params=("image_size", "dataset")) from None

    loader = DATASETS.get(data.dataset)
    default = inspect.signature(loader).parameters.get("image_size") if loader is not None else None
    side = data.image_size if data.image_size is not None else (default.default if default is not None else None)
    if isinstance(side, int):
        check(3, (side, side), 2)
    splits = load_splits(data, log)
    check(splits.in_channels, tuple(splits.image_size), splits.num_classes)
    return splits


def refuse_around(path: str | Path, key: str, data: DataConfig, relation: str, why: str, **around: bool) -> None:
    """One line when a data folder (``DataConfig.folder_around``) holds ``path``, the value of ``key``."""
    found = data.folder_around(path, **around)
    if found is not None:
        param, folder = found
        where = f"{param} {folder}" if param else f"the cache folder {folder}"
        raise ReffAKDError(f"{key} {path} {relation} {where}{why}", params=(key, param) if param else (key,))


def check_out_outside_data(out: str | Path, data: DataConfig) -> None:
    """Refuse an output folder inside the data, test or cache folder."""
    why = "; reffakd never writes into the data: choose an out outside it"
    refuse_around(out, "out", data, "is inside", why, cache=True)


def check_soft_label_inputs(soft_cfg: Any, splits: Any, data: DataConfig) -> None:
    """The soft-label settings against the loaded data before a folder exists (``check_soft_label_data`` decodes each
    unlabelled image and compares it with the labelled ones), and an unlabelled folder that holds images and lies apart
    from the data and test folders (inside or holding either, the autoencoder would see validation or test images)."""
    unlabelled = soft_cfg.unlabelled_dir
    if unlabelled is not None:
        unlabelled_images(unlabelled, 1, (8, 8))  # one line if it is no folder or holds no images (nothing decoded)
        why = ": the autoencoder would also train on labelled, validation or test images; give a folder of other images"
        refuse_around(unlabelled, "unlabelled_dir", data, "overlaps", why, either_way=True)
    check_soft_label_data(soft_cfg, splits)


def check_inputs(spec: Any, splits: Any, device: Any) -> None:
    """A comparison's given teacher and soft labels, or its soft-label settings, against the loaded data."""
    if spec.teacher_methods() and isinstance(spec.teacher, TeacherCheckpoint):
        load_teacher(spec.teacher.checkpoint, splits, device)
    if spec.soft_label_methods():
        if spec.soft_labels.path is not None:
            SoftLabels.load(spec.soft_labels.path).check_matches(splits.class_names, f"dataset {splits.dataset}")
        else:
            check_soft_label_inputs(spec.soft_label_config(), splits, spec.data)


def start_output(cfg: Resolved) -> None:
    """A finished run is never overwritten nor written into the data; an unfinished one (``OUT.partial``) continues only
    with ``resume`` (the refusal names the command line to use), by the command that started it, and not in use."""
    out, resume = cfg.output.out, cfg.engine.resume
    check_out_outside_data(out, cfg.data)
    check_new_run_dir(out)
    partial = partial_path(Path(out))
    try:
        check_partial(partial, resume=resume, kind=cfg.command)
    except ReffAKDError as exc:
        if exc.params != ("resume",):
            raise
        advice = f"continue with: reffakd {shlex.join(cfg.argv)} --resume"
        raise ReffAKDError(f"{exc}; {advice}", params=exc.params) from None
    # A run stopped before its first checkpoint left an OUT.partial with nothing to continue from, which resume starts
    # afresh, so that the advice given when it stopped names a command that works.
    if resume and not partial.is_dir():
        raise ReffAKDError(
            f"resume: no interrupted run to continue at {partial}; run without resume to start it", params=("resume",)
        )


@dataclass
class Prepared:
    """A one-folder command (``run``, ``softlabels``, ``train``) checked and its data loaded; ``main``: the rank that
    writes."""

    cfg: Resolved
    device: torch.device
    splits: DataSplits
    log: Callable[[str], None]
    main: bool

    @contextmanager
    def staged(self, config_yaml: str, done: str) -> Iterator[Path]:
        """``OUT.partial``, made once every rank has checked its inputs, with the log so far and ``config.yaml``;
        renamed to ``OUT`` when the block succeeds, and then the line ``done`` printed."""
        distributed.barrier()
        out, resume, kind = self.cfg.output.out, self.cfg.engine.resume, self.cfg.command
        with staged_run_dir(out, resume=resume, main=self.main, kind=kind) as run_dir:
            if isinstance(self.log, RunLog):
                self.log.attach(run_dir, config_yaml)
            distributed.barrier()
            yield run_dir
            distributed.barrier()
        if self.main:
            print(done)

    def options(self, speed: SpeedOptions) -> TrainOptions:
        """How this command trains, built once: its device, ``speed`` (its spec's), its console and engine options."""
        return TrainOptions(self.device, speed, self.cfg.console.progress, self.log, **asdict(self.cfg.engine))


def prepare_run(cfg: Resolved, models: list[str], soft_cfg: Any, batch_size: int) -> Prepared:
    """What a one-folder command checks and loads before its folder exists: the device (under torchrun, this rank's,
    the global ``batch_size`` split evenly), the output folder, the speed options on this device, the data and, when
    it builds soft labels, their settings (``soft_cfg``)."""
    device = pick_device(cfg.console.device)
    if distributed.is_distributed():
        distributed.check_batch_size(batch_size)
        device = distributed.setup(device)
    main = distributed.is_main_process()
    if main:
        start_output(cfg)
    # The speed and logging options this device and installation can honour (the loop checks them again for callers).
    cfg.speed.validate(device)
    if cfg.engine.tensorboard:
        require_tensorboard()
    log: Callable[[str], None] = RunLog() if main else (lambda line: None)
    splits = load_fitting(models, soft_cfg is not None, cfg.data, log)
    if soft_cfg is not None:
        check_soft_label_inputs(soft_cfg, splits, cfg.data)
    return Prepared(cfg, device, splits, log, main)


def cmd_run(cfg: Resolved, config_yaml: str, spec: Any) -> None:
    """A one-seed spec of ce and reffakd, its soft labels built in the folder, run by the runner."""
    refuse_torchrun(
        "run",
        "run its stages under torchrun one by one: `reffakd softlabels --out S ...`, then `reffakd train --method ce` "
        "and `reffakd train --method reffakd --soft-labels S/soft_labels.safetensors` (docs/SCALING.md)",
    )
    run = prepare_run(cfg, [cfg.student.model], spec.soft_label_config(), cfg.optim.batch_size)
    folders = {"ce": "ce", "reffakd": f"reffakd-{cfg.soft.preset}"}
    with run.staged(config_yaml, f"run folder: {cfg.output.out}") as run_dir:
        run_pipeline(spec, folders, run.splits, run_dir, run.options(spec.speed))


def cmd_softlabels(cfg: Resolved, config_yaml: str, soft_cfg: Any) -> None:
    """Train the autoencoder and write the soft labels (under torchrun, each rank its shard; rank 0 writes)."""
    run = prepare_run(cfg, [], soft_cfg, soft_cfg.autoencoder.batch_size)
    with run.staged(config_yaml, f"soft labels: {Path(cfg.output.out) / SOFT_LABELS_FILE}") as run_dir:
        build_soft_labels(run.splits, soft_cfg, run_dir, run.options(cfg.speed))  # the autoencoder's: cuda_graph


def refuse_torchrun(command: str, instead: str) -> None:
    """One line, before any rank writes, for a command that does not run under torchrun, naming what to run instead."""
    if distributed.is_distributed():
        raise ReffAKDError(f"reffakd {command} does not run under torchrun; {instead}")


def method_inputs(method: str, soft_labels: str | None, teacher: str | None) -> None:
    """A method gets exactly the inputs its source kind takes: one line for a missing or a stray one."""
    needs = get_method(method).needs
    for param, value in (("soft_labels", soft_labels), ("teacher", teacher)):
        if value and needs != param:
            users = ", ".join(sorted(n for n, m in DISTILLERS.items() if m.needs == param))
            raise ReffAKDError(f"{param} is used only by methods {users}, not {method}", params=(param,))
        if not value and needs == param:
            raise ReffAKDError(f"method {method} needs {param} PATH", params=("method", param))


def cmd_train(cfg: Resolved, config_yaml: str, spec: Any) -> None:
    """A one-method, one-seed spec, its soft labels or teacher as given (under torchrun, each rank its shard)."""
    inputs = cfg.inputs
    method, seed = inputs.method, cfg.seed.seed
    method_inputs(method, inputs.soft_labels, inputs.teacher)
    student = spec.student_config(method, seed)
    soft = SoftLabels.load(inputs.soft_labels) if inputs.soft_labels else None
    run = prepare_run(cfg, [student.model], None, student.optim.batch_size)
    if soft is not None:
        check_soft_labels_fit(soft, run.splits, method)
    teacher = load_teacher(inputs.teacher, run.splits, run.device) if inputs.teacher else None
    if cfg.speed.cuda_graph:
        check_cuda_graph(student, run.splits, soft, teacher)
    with run.staged(config_yaml, f"run folder: {cfg.output.out}") as run_dir:
        run_one(
            spec, RunItem(method, method, seed), run_dir, run.splits, Shared(soft, teacher), run.options(spec.speed)
        )


def cmd_compare(cfg: Resolved, config_yaml: str, spec: Any) -> None:
    """compare and sweep: one code path; sweep requires a grid and writes ``sweep.md``/``sweep.csv``."""
    refuse_torchrun(
        cfg.command,
        "run it as one process with --jobs N (one run per GPU when several are visible), "
        "or each run under torchrun with `reffakd train` (docs/SCALING.md)",
    )
    from .compare import check_resumable, compare_report, run_compare
    from .reports.sweep_report import write_sweep_report

    options = TrainOptions(pick_device(cfg.console.device), spec.speed, cfg.console.progress)
    spec.speed.validate(options.device)  # the device's refusals before any data is loaded

    out = Path(cfg.output.out)
    check_out_outside_data(out, spec.data)
    if not out.exists():
        check_writable(out, suffix="")
    check_resumable(out, spec)
    check_free(out / LOCK, f"comparison folder {out}")
    if spec.budgets is not None:  # a label-budget study: one comparison per budget (study.py)
        from .study import run_study

        run_study(spec, out, options, jobs=cfg.compare.jobs, config_yaml=config_yaml)
        print(f"study folder: {out} (study.md{', study.png' * cfg.console.plots}, labels-<budget>/results.md)")
        return
    models = [spec.student.model]
    if spec.teacher_methods() and isinstance(spec.teacher, NetworkSpec):
        models.append(spec.teacher.model)
    splits = load_fitting(models, bool(spec.soft_label_methods()) and spec.soft_labels.path is None, spec.data, print)
    check_inputs(spec, splits, options.device)  # before spec.json is written: a corrected command must not be refused
    sweep = cfg.command == "sweep"
    report = (lambda folder, final: write_sweep_report(folder, method_names())) if sweep else compare_report
    run_compare(spec, out, splits, options, jobs=cfg.compare.jobs, report=report, config_yaml=config_yaml)
    files = "sweep.md, sweep.csv" if sweep else f"results.md, results.csv{', accuracy_vs_cost.png' * cfg.console.plots}"
    print(f"{'sweep' if sweep else 'comparison'} folder: {out} ({files})")


def cmd_cost(cfg: Resolved, config_yaml: str, checked: Any = None) -> None:
    """Print the cost table of a recipe (``cost.recipe_cost``): FLOP counts x images x epochs, nothing trained."""
    from .cost import cost_json, recipe_cost
    from .reports.tables import cost_table

    preset = cfg.cost.preset
    where = f"preset {preset}"
    cost = recipe_cost(RunSpec.from_dict(load_recipe(preset), where), where)
    print(json.dumps(cost_json(preset, cost), indent=2) if cfg.cost.json else cost_table(preset, cost))


# (its typed configuration, its config.yaml, what ``runconfig.check_command`` returned) -> its exit status (None: 0)
HANDLERS: dict[str, Callable[[Resolved, str, Any], int | None]] = {
    "run": cmd_run,
    "softlabels": cmd_softlabels,
    "train": cmd_train,
    "compare": cmd_compare,
    "sweep": cmd_compare,
    # a trained model leaves the lab (``deploy/commands.py``)
    "evaluate": lambda cfg, config_yaml, checked: deploy.evaluate(cfg.evaluate, cfg.data, cfg.console.device),
    "export": lambda cfg, config_yaml, checked: deploy.export(cfg.export, cfg.output.out),
    "predict": lambda cfg, config_yaml, checked: deploy.predict(cfg.predict, cfg.console.device),
    "bench": lambda cfg, config_yaml, checked: deploy.bench(cfg.bench, cfg.console.device),
    "cost": cmd_cost,
}
