"""One student: ``train_student`` = ``build_student`` (model, distiller, batches) + ``engine.fit`` + its summary and
cost ledger. Every run of every command ends here; under torchrun every rank calls it and rank 0 alone writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import DataSplits, make_batches, split_fingerprint
from .distillers import TARGET_SOURCES, Distiller, Params, build_distiller, get_method, restructures_soft_labels
from .engine import FitBatches, FitResult, OptimConfig, SpeedOptions, TrainOptions, distributed, fit
from .engine.cudagraph import refuse_unrecordable
from .io import write_json
from .models import check_classifier, create_model
from .reports import plot_training_curves
from .resources import StageCost, combine_stages, count_flops, forward_flops, measure, parameter_count
from .seed import seed_everything
from .softlabels import SoftLabels
from .sources import SoftTargetSource, TeacherNetwork
from .version import __version__

EVAL_BATCH_SIZE = 1024


@dataclass
class StudentConfig:
    """One student run: the method, its ``Params`` (a mapping of overrides, ``None`` for a default, is read into them
    and checked when the config is made), the optimiser, the seed."""

    method: str = "ce"
    model: str = "lenet5"
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    params: Params | Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params = get_method(self.method).parameters(self.params)

    def method_params(self) -> dict[str, Any]:
        """The parameters as JSON (checkpoints, summaries)."""
        assert isinstance(self.params, Params)  # read in __post_init__
        return self.params.to_dict()

    def validate(self) -> None:
        self.optim.validate()


def student_step_flops(student: torch.nn.Module, shape: tuple[int, int, int], device: torch.device) -> int:
    """FLOPs per image of one training step of the student alone, forward and backward (the soft-target terms add no
    matmuls or convolutions; a teacher's forward pass is a cost of the soft targets)."""
    x, y = torch.zeros(2, *shape, device=device), torch.zeros(2, dtype=torch.long, device=device)
    flops = count_flops(lambda: torch.nn.functional.cross_entropy(student(x), y).backward()) // 2
    student.zero_grad(set_to_none=True)
    return flops


def cost_totals(student_stage: dict[str, Any], soft: dict[str, Any]) -> dict[str, Any]:
    """The two totals a comparison needs: what the soft targets cost, what the student cost."""
    peaks = [p for p in (student_stage.get("peak_memory_bytes"), soft.get("peak_memory_bytes")) if p]
    return {
        "soft_targets": {"flops": int(soft["flops"]), "seconds": float(soft["seconds"])},
        "student": {"flops": int(student_stage["flops"]), "seconds": float(student_stage["seconds"])},
        "flops": int(soft["flops"]) + int(student_stage["flops"]),
        "seconds": float(soft["seconds"]) + float(student_stage["seconds"]),
        "peak_memory_bytes": max(peaks) if peaks else None,
    }


def trains_per_image(method: str) -> bool:
    """Whether ``method``'s soft targets are per-image (a table tied to the training split's content)."""
    source = get_method(method).target_source
    return source is not None and TARGET_SOURCES[source].per_image


def student_distiller(
    cfg: StudentConfig,
    splits: DataSplits,
    student: torch.nn.Module,
    soft_labels: SoftLabels | None,
    teacher: SoftTargetSource | None,
) -> Distiller:
    """The run's method around ``student``, its source made from the soft labels or the teacher."""
    per_image = trains_per_image(cfg.method)
    return build_distiller(
        cfg.method,
        student,
        num_classes=splits.num_classes,
        params=cfg.params,
        total_epochs=cfg.optim.epochs,
        soft_labels=soft_labels,
        teacher=teacher,
        num_samples=len(splits.train),
        input_shape=(splits.in_channels, *splits.image_size),
        split_fingerprint=split_fingerprint(splits.train) if per_image else None,
        data=splits,
    )


def check_cuda_graph(
    cfg: StudentConfig,
    splits: DataSplits,
    soft_labels: SoftLabels | None,
    teacher: SoftTargetSource | None,
    instead: str | None = None,
) -> None:
    """``refuse_unrecordable`` before a run folder exists: the method built around a stand-in student."""
    distiller = student_distiller(cfg, splits, torch.nn.Identity(), soft_labels, teacher)
    refuse_unrecordable(distiller, cfg.method, instead)


def stand_in_inputs(splits: DataSplits, per_image: bool) -> tuple[SoftLabels, SoftTargetSource]:
    """Soft labels and a teacher of the right shapes whose values mean nothing, to ask what a method's step does
    (``check_cuda_graph``) before a comparison makes the real ones; ``per_image``: with a per-image table (a broadcast
    view) tied to ``splits.train``."""
    c, n = splits.num_classes, len(splits.train)
    uniform = torch.full((1, c), 1.0 / c)
    instance = {}
    if per_image:
        instance = {
            "instance": uniform.expand(n, c),
            "instance_index": torch.arange(n),
            "metadata": {"instance_split": split_fingerprint(splits.train)},
        }
    soft = SoftLabels(uniform.expand(c, c).clone(), splits.class_names, **instance)
    return soft, TeacherNetwork(torch.nn.Identity(), c, forward_flops_per_image=0, name="stand-in teacher")


@dataclass
class BuiltStudent:
    """What ``build_student`` makes before training: the student under its recorded name, its distiller, the
    batches, what its checkpoints record, and the FLOPs per image its ledger multiplies."""

    model_name: str
    student: torch.nn.Module
    distiller: Distiller
    batches: FitBatches
    checkpoint_meta: dict[str, Any]
    step_flops: int
    forward_flops: int


def check_soft_labels_fit(soft_labels: SoftLabels, splits: DataSplits, method: str | None = None) -> None:
    """The one check that soft labels fit a run: these classes, this labelled subset and, for a ``method``, the kind
    (semi-supervised or not) and the structure it takes."""
    soft_labels.check_matches(splits.class_names, f"dataset {splits.dataset}")
    soft_labels.check_labelled(splits.budget)
    if method is None:
        return
    soft_labels.check_semi(get_method(method).source.semi, method)
    soft_labels.check_structure(method, restructures_soft_labels(method))


def run_inputs(method: str, soft_labels: SoftLabels | None, teacher: SoftTargetSource | None) -> dict[str, str]:
    """The content hashes of the artifacts a run of ``method`` trains against (its soft labels, its teacher)."""
    needs = get_method(method).needs
    inputs = {}
    if needs == "soft_labels" and soft_labels is not None:
        inputs["soft_labels"] = soft_labels.fingerprint()
    if needs == "teacher" and isinstance(teacher, TeacherNetwork):
        inputs["teacher"] = teacher.fingerprint()
    return inputs


def build_student(
    splits: DataSplits,
    cfg: StudentConfig,
    options: TrainOptions,
    soft_labels: SoftLabels | None,
    teacher: SoftTargetSource | None,
    model: torch.nn.Module | None,
) -> BuiltStudent:
    """The student (``cfg.model``, or the caller's ``model``), its distiller and batches on ``options.device``."""
    generator = seed_everything(cfg.seed)
    device = options.device
    c, (h, w) = splits.in_channels, splits.image_size
    if model is None:
        model_name = cfg.model
        student = create_model(model_name, num_classes=splits.num_classes, in_channels=c, image_size=(h, w))
    else:
        model_name, student = type(model).__name__, model
        check_classifier(student, model_name, num_classes=splits.num_classes, in_channels=c, image_size=(h, w))
    student = student.to(device)
    distiller = student_distiller(cfg, splits, student, soft_labels, teacher).to(device)
    if options.speed.cuda_graph:
        refuse_unrecordable(distiller, cfg.method)
    shard = {"shard": distributed.shard()} if distributed.active() else {}

    def batches(split: Any, size: int = EVAL_BATCH_SIZE, **train: Any) -> Any:
        return make_batches(split, size, normalize=(splits.mean, splits.std), device=device, **shard, **train)

    # Training images carry their split index (per-image and learning sources) and a same-class partner (CS-KD); a
    # tuning trial has no test split, so nothing it reports can come from it.
    fit_batches = FitBatches(
        batches(splits.train, cfg.optim.batch_size, shuffle=True, augment=splits.augment, generator=generator,
                indexed=True, pairs=distiller.pairs),
        batches(splits.val),
        batches(splits.test) if splits.test is not None else None,
    )  # fmt: skip
    checkpoint_meta = {
        "model": model_name,
        "num_classes": splits.num_classes,
        "in_channels": c,
        "image_size": [h, w],
        "class_names": list(splits.class_names),
        "mean": list(splits.mean),
        "std": list(splits.std),
        "dataset": splits.dataset,
        "method": cfg.method,
        "seed": cfg.seed,
        "reffakd_version": __version__,
        "augment": asdict(splits.augment),
        **({"labelled": splits.budget} if splits.budget is not None else {}),  # resuming on another subset: refused
        "data": splits.identity,  # resume and `evaluate --split val` refuse other data or another split
        # A run's every input is part of its identity: resuming with other parameters, other soft labels or another
        # teacher is refused.
        "method_params": cfg.method_params(),
        **({"inputs": inputs} if (inputs := run_inputs(cfg.method, soft_labels, teacher)) else {}),
    }
    return BuiltStudent(
        model_name,
        student,
        distiller,
        fit_batches,
        checkpoint_meta,
        student_step_flops(student, (c, h, w), device),
        forward_flops(student, (c, h, w)),
    )


def student_ledger(built: BuiltStudent, result: FitResult, cost: StageCost) -> dict[str, Any]:
    """The run's cost ledger: the student's own training (less the time a network source spent inside the loop,
    plus earlier sessions'), the soft targets' cost as their source reports it, and the totals."""
    stage = cost.to_dict()
    if result.resumed_from is not None:  # earlier sessions' time counts too
        stage["seconds"] += result.prior_seconds
        stage["details"] = {"resumed_from": result.resumed_from, "seconds_before_resume": result.prior_seconds}
    source = built.distiller.source
    if source is not None and source.seconds:  # a network source ran inside the training loop: its time is theirs
        stage["details"] = {**stage["details"], "wall_seconds_including_teacher": stage["seconds"]}
        stage["seconds"] -= source.seconds
    if source is None:
        soft = combine_stages({}, source="none")
    else:
        soft = source.cost(result.train_images_seen, stage["peak_memory_bytes"])
    return {"student": stage, "soft_targets": soft, "totals": cost_totals(stage, soft)}


def student_summary(
    splits: DataSplits,
    cfg: StudentConfig,
    options: TrainOptions,
    built: BuiltStudent,
    result: FitResult,
    ledger: dict[str, Any],
    soft_labels: SoftLabels | None,
) -> dict[str, Any]:
    """``summary.json``: what ran (method, model, data, settings), its selection and test results, its ledger."""
    method = get_method(cfg.method)
    summary = {
        "name": cfg.method,
        "method": cfg.method,
        "model": built.model_name,
        "dataset": splits.dataset,
        "train_images": len(splits.train),
        "num_classes": splits.num_classes,
        "labelled": splits.budget,  # the labelled budget's record (None: every training label)
        "seed": cfg.seed,
        "config": {"optim": cfg.optim.to_dict(), **built.distiller.describe()},
        "soft_labels": soft_labels.metadata.get("config") if soft_labels and method.needs == "soft_labels" else None,
        "best_epoch": result.best_epoch,
        "best_val_top1": result.best_val_top1,
        "last_val_top1": result.history[-1]["val_top1"],
        "test_best": result.test_best,
        "test_last": result.test_last,
        "parameters": parameter_count(built.student),
        "forward_flops_per_image": built.forward_flops,
        "forward_macs_per_image": built.forward_flops // 2,
        "train_step_flops_per_image": built.step_flops,
        "cost": ledger,
        "reffakd_version": __version__,
    }
    if options.speed != SpeedOptions():
        summary["config"]["speed"] = options.speed.to_dict()
    if distributed.world_size() > 1:
        summary["config"]["distributed"] = {
            "world_size": distributed.world_size(),
            "per_rank_batch_size": cfg.optim.batch_size // distributed.world_size(),
            "sync_batchnorm": options.sync_batchnorm,
        }
    return summary


def train_student(
    splits: DataSplits,
    cfg: StudentConfig,
    run_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    soft_labels: SoftLabels | None = None,
    teacher: SoftTargetSource | None = None,
    summary: dict[str, Any] | None = None,
    model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train one student with one method; write checkpoints, metrics, curves and ``summary.json``; return it.

    ``options``: how it trains (``engine.TrainOptions``; None: the defaults, on the CPU). ``summary``: entries the
    caller sets (its ``name``, default the method; a grid variant, a tuned setting). ``model``: your own module in place
    of ``cfg.model``, at the weights you gave it, recorded under its class name (``register_model`` under that name
    lets a checkpoint of it load). ``soft_labels`` or ``teacher`` (``reffakd.sources.load_teacher`` or
    ``teacher_from_module``) feed the methods whose source kind takes them. Under torchrun ``cfg.optim.batch_size`` is
    the global batch and only rank 0 writes.
    """
    cfg.validate()
    method = get_method(cfg.method)
    if soft_labels is not None and method.needs == "soft_labels":
        check_soft_labels_fit(soft_labels, splits, cfg.method)
    run_dir = Path(run_dir)
    distributed.check_batch_size(cfg.optim.batch_size)
    options = (options or TrainOptions()).on_this_rank()
    built = build_student(splits, cfg, options, soft_labels, teacher, model)
    name = (summary or {}).get("name", cfg.method)
    source = built.distiller.source
    options.log(
        f"train {name}: {built.model_name} ({parameter_count(built.student):,} parameters) with {cfg.method} "
        f"on {options.device}" + (f", soft targets from {source.describe()['source']}" if source is not None else "")
    )
    with measure("student_training", options.device) as cost:
        result = fit(built.distiller, built.batches, cfg.optim, run_dir, options, checkpoint_meta=built.checkpoint_meta)
        cost.flops = built.step_flops * result.train_images_seen + built.forward_flops * result.eval_images_seen
    assert (result.test_best is not None) == (splits.test is not None)
    record = student_summary(splits, cfg, options, built, result, student_ledger(built, result, cost), soft_labels)
    record.update(summary or {})
    if distributed.is_main_process():
        write_json(run_dir / "summary.json", record)
        plot_training_curves({record["name"]: result.history}, run_dir / "curves.png")
    tested = (
        f"; test top-1 {result.test_best['top1']:.2f}% (selected), {result.test_last['top1']:.2f}% (last)"
        if result.test_best is not None and result.test_last is not None
        else " (no test split)"
    )
    options.log(f"{record['name']}: val top-1 {result.best_val_top1:.2f}% at epoch {result.best_epoch}{tested}")
    return record
