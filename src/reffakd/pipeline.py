"""The Python API behind the CLI: build soft labels, train a student, run the whole comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .data import BatchAugment, DataSplits, TensorBatches, load_dataset, split_train_val
from .distillers import build_distiller
from .engine import OptimConfig, fit
from .io import read_jsonl, write_json, write_text_atomic
from .losses import check_alpha_temperature
from .models import create_model
from .reports import plot_training_curves, summary_table
from .resources import count_flops, forward_flops, measure, parameter_count
from .seed import seed_everything
from .softlabels import SoftLabelConfig, SoftLabels, build_soft_labels

EVAL_BATCH_SIZE = 1024


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    from .errors import ReffAKDError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReffAKDError(f"--device {name} asked for but CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ReffAKDError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int = 5000
    split_seed: int = 0
    download: bool = True


def load_splits(cfg: DataConfig, log: Callable[[str], None] = print) -> DataSplits:
    """Load the dataset and carve the seeded validation split (its seed is fixed per run, not per student)."""
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download)
    log(f"data: {dataset.name} from {dataset.source}: {len(dataset.train_labels)} train / {len(dataset.test_labels)} test, "
        f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size[0]}x{dataset.image_size[1]}")
    return split_train_val(dataset, cfg.val_size, cfg.split_seed)


@dataclass
class StudentConfig:
    method: str = "ce"
    model: str = "lenet5"
    optim: OptimConfig = field(default_factory=OptimConfig)
    alpha: float = 0.5
    temperature: float = 4.0
    seed: int = 0

    def validate(self) -> None:
        self.optim.validate()
        check_alpha_temperature(self.alpha, self.temperature)


def train_student(
    splits: DataSplits,
    cfg: StudentConfig,
    run_dir: str | Path,
    *,
    device: torch.device,
    soft_labels: SoftLabels | None = None,
    soft_target_cost: dict[str, Any] | None = None,
    name: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one student with one method; write checkpoints, metrics, curves and ``summary.json``."""
    cfg.validate()
    if soft_labels is not None:
        soft_labels.check_matches(splits.class_names, f"dataset {splits.dataset}")
    run_dir = Path(run_dir)
    generator = seed_everything(cfg.seed)
    c, (h, w) = splits.in_channels, splits.image_size
    student = create_model(cfg.model, num_classes=splits.num_classes, in_channels=c, image_size=(h, w)).to(device)
    distiller = build_distiller(cfg.method, student, soft_labels=soft_labels, alpha=cfg.alpha, temperature=cfg.temperature).to(device)
    normalize = (splits.mean, splits.std)
    train_batches = TensorBatches(splits.train, cfg.optim.batch_size, shuffle=True, augment=BatchAugment(), normalize=normalize, generator=generator, device=device)
    val_batches = TensorBatches(splits.val, EVAL_BATCH_SIZE, normalize=normalize, device=device)
    test_batches = TensorBatches(splits.test, EVAL_BATCH_SIZE, normalize=normalize, device=device)

    def one_step() -> None:
        _, losses = distiller.forward_train(torch.zeros(2, c, h, w, device=device), torch.zeros(2, dtype=torch.long, device=device), 1)
        sum(losses.values()).backward()

    step_flops = count_flops(one_step) // 2
    distiller.zero_grad(set_to_none=True)
    fwd_flops = forward_flops(student, (c, h, w))
    checkpoint_meta = {
        "model": cfg.model, "num_classes": splits.num_classes, "in_channels": c, "image_size": [h, w],
        "class_names": list(splits.class_names), "mean": list(splits.mean), "std": list(splits.std),
        "dataset": splits.dataset, "method": cfg.method, "seed": cfg.seed, "reffakd_version": __version__,
    }
    log(f"train {name or cfg.method}: {cfg.model} ({parameter_count(student):,} parameters) with {cfg.method} on {device}")
    with measure("student_training", device) as cost:
        result = fit(distiller, train_batches, val_batches, cfg.optim, run_dir, checkpoint_meta=checkpoint_meta,
                     test_batches=test_batches, progress=progress, log=log)
        cost.flops = step_flops * result.train_images_seen + fwd_flops * result.eval_images_seen
    assert result.test_best is not None and result.test_last is not None
    summary = {
        "name": name or cfg.method,
        "method": cfg.method,
        "model": cfg.model,
        "dataset": splits.dataset,
        "seed": cfg.seed,
        "config": {"optim": cfg.optim.to_dict(), **distiller.describe()},
        "soft_labels": soft_labels.metadata.get("config") if soft_labels is not None else None,
        "best_epoch": result.best_epoch,
        "best_val_top1": result.best_val_top1,
        "last_val_top1": result.history[-1]["val_top1"],
        "test_best": result.test_best,
        "test_last": result.test_last,
        "parameters": parameter_count(student),
        "forward_flops_per_image": fwd_flops,
        "train_step_flops_per_image": step_flops,
        "cost": {"student": cost.to_dict(), "soft_targets": soft_target_cost},
        "reffakd_version": __version__,
    }
    write_json(run_dir / "summary.json", summary)
    plot_training_curves({summary["name"]: result.history}, run_dir / "curves.png")
    log(f"{summary['name']}: val top-1 {result.best_val_top1:.2f}% at epoch {result.best_epoch}; "
        f"test top-1 {result.test_best['top1']:.2f}% (selected), {result.test_last['top1']:.2f}% (last)")
    return summary


def run_pipeline(
    splits: DataSplits,
    soft_cfg: SoftLabelConfig,
    student_cfgs: dict[str, StudentConfig],
    run_dir: Path,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Soft labels once, then every named student; ``summary.md`` and ``curves.png`` compare them."""
    soft, soft_cost = build_soft_labels(splits, soft_cfg, run_dir / "softlabels", device=device, progress=progress, log=log)
    summaries = []
    for name, cfg in student_cfgs.items():
        uses_soft = cfg.method != "ce"
        summaries.append(
            train_student(splits, cfg, run_dir / name, device=device, soft_labels=soft if uses_soft else None,
                          soft_target_cost=soft_cost if uses_soft else None, name=name, progress=progress, log=log)
        )
    table = summary_table(summaries)
    write_text_atomic(run_dir / "summary.md", table + "\n")
    write_json(run_dir / "summary.json", {"runs": summaries, "soft_labels_cost": soft_cost, "dataset": splits.dataset,
                                        "train_images": len(splits.train), "val_images": len(splits.val), "test_images": len(splits.test)})
    plot_training_curves({s["name"]: read_jsonl(run_dir / s["name"] / "metrics.jsonl") for s in summaries}, run_dir / "curves.png")
    log("\n" + table)
    return summaries
