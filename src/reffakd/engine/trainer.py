"""The one training loop every method uses.

Each epoch: train through the distiller (which returns logits plus named losses), evaluate on the
validation split, log a JSON line, keep ``last`` and, when validation top-1 improves, ``best``.
At the end both are evaluated once on the test split; the test set never chooses anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from ..io import JsonlWriter
from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import evaluate
from .optim import OptimConfig, build_optimizer, build_scheduler

if TYPE_CHECKING:
    from ..distillers import Distiller

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_top1: float
    test_best: dict[str, float] | None
    test_last: dict[str, float] | None
    train_images_seen: int
    eval_images_seen: int
    seconds: float


def fit(
    distiller: "Distiller",
    train_batches: Batches,
    val_batches: Batches,
    cfg: OptimConfig,
    run_dir: str | Path,
    *,
    checkpoint_meta: dict[str, Any],
    test_batches: Batches | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``distiller.student``; write ``metrics.jsonl``, ``best.safetensors`` and ``last.safetensors`` in ``run_dir``."""
    cfg.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    student = distiller.student
    optimizer = build_optimizer(student.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    metrics_log = JsonlWriter(run_dir / "metrics.jsonl")
    history: list[dict[str, Any]] = []
    best_val, best_epoch = -1.0, 0
    train_seen = eval_seen = 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        distiller.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        bar = tqdm(train_batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress, unit="batch")
        for images, targets in bar:
            logits, losses = distiller.forward_train(images, targets, epoch)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            b = targets.shape[0]
            seen += b
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * b
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * b
            correct += int((logits.detach().argmax(1) == targets).sum())
            if progress:
                bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}", refresh=False)
        scheduler.step()
        train_seen += seen
        val = evaluate(student, val_batches)
        eval_seen += int(val["images"])
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": sums.pop("loss") / seen,
            **{f"train_{k}": v / seen for k, v in sums.items()},
            "train_top1": 100.0 * correct / seen,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "seconds": time.perf_counter() - epoch_start,
        }
        meta = {**checkpoint_meta, "epoch": epoch, "val_top1": val["top1"], "val_top5": val["top5"]}
        save_checkpoint(run_dir / "last.safetensors", student, meta)
        if val["top1"] > best_val:
            best_val, best_epoch = val["top1"], epoch
            save_checkpoint(run_dir / "best.safetensors", student, meta)
        record["best_epoch"] = best_epoch
        history.append(record)
        metrics_log.write(record)
        log(
            f"epoch {epoch:>3}/{cfg.epochs}  loss {record['train_loss']:.4f}  train {record['train_top1']:.2f}%  "
            f"val {val['top1']:.2f}% (best {best_val:.2f}% @ {best_epoch})  lr {lr:.4g}  {record['seconds']:.1f}s"
        )
    seconds = time.perf_counter() - start
    test_best = test_last = None
    if test_batches is not None:
        test_last = evaluate(student, test_batches)
        state, _ = load_checkpoint(run_dir / "best.safetensors")
        last_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
        student.load_state_dict(state)
        test_best = evaluate(student, test_batches)
        student.load_state_dict(last_state)
    return FitResult(history, best_epoch, best_val, test_best, test_last, train_seen, eval_seen, seconds)
