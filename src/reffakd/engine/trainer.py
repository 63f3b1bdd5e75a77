"""The one training loop every method uses.

Each epoch: train through the distiller (which returns logits plus named losses), evaluate on the
validation split, log a JSON line, keep ``last`` and, when validation top-1 improves, ``best``, and
write the resume checkpoint (``resume.json``, see ``engine.resume``). At the end both are evaluated
once on the test split; the test set never chooses anything.

A run survives: SIGINT/SIGTERM finish the current step, write the resume checkpoint (mid-epoch
included) and raise ``TrainingInterrupted``; ``resume=True`` continues to the same weights, bit for
bit, as a run never stopped. Under torchrun the student is wrapped in DistributedDataParallel,
batch norm spans the global batch, metrics are summed over the ranks, and rank 0 alone writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..errors import ReffAKDError
from ..io import JsonlWriter, _json_default, write_text_atomic, write_with
from ..models.checkpoint import load_checkpoint, save_checkpoint
from . import distributed
from .logsinks import TENSORBOARD_DIR, TensorBoardSink, require_tensorboard
from .metrics import COUNT_KEYS, accuracy, evaluate_counts
from .optim import OptimConfig, build_optimizer, build_scheduler
from .resume import (
    RESUME_JSON,
    Position,
    TrainingState,
    capture_rng,
    identity_mismatch,
    load_state,
    restore_rng,
    resume_json_path,
    save_state,
)
from .signals import StopSignals, TrainingInterrupted
from .speed import SpeedOptions
from .syncbn import convert_sync_batchnorm, revert_sync_batchnorm

if TYPE_CHECKING:
    from ..distillers import Distiller

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Resume = bool | str | os.PathLike[str]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_top1: float
    test_best: dict[str, float] | None
    test_last: dict[str, float] | None
    train_images_seen: int
    eval_images_seen: int
    seconds: float  # training time of all sessions, resumed ones included
    resumed_from: str | None = None  # the resume checkpoint this session started from
    prior_seconds: float = 0.0  # of ``seconds``, those spent before this session


def fit(
    distiller: Distiller,
    train_batches: Batches,
    val_batches: Batches,
    cfg: OptimConfig,
    run_dir: str | Path,
    *,
    checkpoint_meta: dict[str, Any],
    test_batches: Batches | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: Resume = False,
    amp: str = "none",
    channels_last: bool = False,
    compile: bool = False,
    tensorboard: bool = False,
    sync_batchnorm: bool = True,
    handle_signals: bool = True,
) -> FitResult:
    """Train ``distiller.student``; write ``metrics.jsonl``, ``best``/``last.safetensors`` and the resume checkpoint in ``run_dir``.

    ``resume``: True continues from ``run_dir/resume.json`` when there is one (else starts afresh); a
    path (a run folder or its ``resume.json``) continues from there. ``amp`` ("none", "bf16", "fp16"),
    ``channels_last`` and ``compile``: speed options (``engine.speed``). ``tensorboard``: mirror the
    metrics to ``run_dir/tensorboard``. ``sync_batchnorm``: under torchrun, batch-norm statistics over
    the global batch (so N ranks train as one process would). ``handle_signals``: stop cleanly on
    SIGINT/SIGTERM (main thread only).
    """
    return _Fit(
        distiller,
        train_batches,
        val_batches,
        cfg,
        Path(run_dir),
        checkpoint_meta,
        test_batches,
        progress,
        log,
        SpeedOptions(amp, channels_last, compile),
        tensorboard,
        sync_batchnorm,
    ).run(resume, handle_signals)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    return torch.device("cpu")


class _Fit:
    """One call of ``fit``: the loop's state in one place, so checkpoints can capture all of it."""

    def __init__(
        self,
        distiller: Distiller,
        train_batches: Batches,
        val_batches: Batches,
        cfg: OptimConfig,
        run_dir: Path,
        checkpoint_meta: dict[str, Any],
        test_batches: Batches | None,
        progress: bool,
        log: Callable[[str], None],
        speed: SpeedOptions,
        tensorboard: bool,
        sync_batchnorm: bool,
    ) -> None:
        cfg.validate()
        self.distiller, self.student = distiller, distiller.student
        self.train_batches, self.val_batches, self.test_batches = train_batches, val_batches, test_batches
        self.cfg, self.run_dir, self.checkpoint_meta = cfg, run_dir, checkpoint_meta
        self.device = _device_of(self.student)
        if distributed.is_distributed() and not distributed.is_initialized():
            if distributed.setup(self.device) != self.device:
                raise ReffAKDError(
                    f"under torchrun the student must be on cuda:LOCAL_RANK, not {self.device}; "
                    "build it on reffakd.engine.distributed.setup(device)"
                )
        self.ddp = distributed.active()
        self.main = distributed.is_main_process()
        self.world = distributed.world_size()
        self.progress = progress and self.main
        self.log = log if self.main else (lambda line: None)
        self.speed = speed
        speed.validate(self.device)
        self.tensorboard = tensorboard
        if tensorboard:
            require_tensorboard()
        self.sync_batchnorm = sync_batchnorm
        if self.ddp:
            distributed.check_batch_size(cfg.batch_size)
            if getattr(train_batches, "shard", None) != distributed.shard():
                raise ReffAKDError(
                    "under torchrun the training batches must be this rank's shard: "
                    "make_batches(..., shard=reffakd.engine.distributed.shard())"
                )
        self.generator: torch.Generator | None = getattr(train_batches, "generator", None)
        self.resumable = callable(getattr(train_batches, "iter_from", None))
        self.optimizer = build_optimizer(self.student.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = speed.grad_scaler(self.device)
        self.identity = {
            "run": {k: v for k, v in checkpoint_meta.items() if k != "reffakd_version"},
            "optim": cfg.to_dict(),
        }
        self.history: list[dict[str, Any]] = []
        self.best_val, self.best_epoch = -1.0, 0
        self.train_seen = self.eval_seen = 0
        self.prior_seconds = 0.0
        self.session_start = time.perf_counter()
        self.checkpoint: Path | None = None  # the latest resume checkpoint
        self.stop = StopSignals(False)

    # ------------------------------------------------------------------ the run

    def run(self, resume: Resume, handle_signals: bool) -> FitResult:
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        state, resumed_from = self._load_resume(resume)
        swaps: list[Any] = []
        sink: TensorBoardSink | None = None
        try:
            if state is not None:
                self._restore_training(state)
            if self.ddp and self.sync_batchnorm:
                swaps = convert_sync_batchnorm(self.student, self.device)
            self.speed.prepare_model(self.student)
            if self.ddp:
                from torch.nn.parallel import DistributedDataParallel

                self.distiller.student = DistributedDataParallel(
                    self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None
                )
            if state is not None:
                self._restore_random(state)
            if self.tensorboard and self.main:
                sink = TensorBoardSink(
                    self.run_dir / TENSORBOARD_DIR, purge_step=(state.epoch + 1) if state is not None else None
                )
            position = state.position if state is not None else None
            start = state.epoch + 1 if state is not None else 1
            self.session_start = time.perf_counter()
            with StopSignals(handle_signals) as self.stop:
                for epoch in range(start, self.cfg.epochs + 1):
                    self._epoch(epoch, position if position is not None and position.epoch == epoch else None, sink)
                    self._check_stop_at_epoch_end(epoch)
            seconds = self._elapsed()
            test_best, test_last = self._test()
        finally:
            self.distiller.student = self.student
            revert_sync_batchnorm(swaps)
            if sink is not None:
                sink.close()
        return FitResult(
            self.history,
            self.best_epoch,
            self.best_val,
            test_best,
            test_last,
            self.train_seen,
            self.eval_seen,
            seconds,
            resumed_from,
            self.prior_seconds,
        )

    def _elapsed(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.session_start

    def _epoch(self, epoch: int, position: Position | None, sink: TensorBoardSink | None) -> None:
        cfg, distiller, optimizer = self.cfg, self.distiller, self.optimizer
        epoch_start = time.perf_counter()
        if position is None:
            lr = optimizer.param_groups[0]["lr"]
            sums: dict[str, float] = {}
            correct = seen = step = 0
            prior, order = 0.0, None
        else:  # the rest of an interrupted epoch; the sums so far live on rank 0
            lr, step, prior, order = position.lr, position.next_batch, position.seconds, position.order
            keep = self.main or not self.ddp
            sums = {k: (v if keep else 0.0) for k, v in position.sums.items()}
            correct, seen = (position.correct, position.seen) if keep else (0, 0)
        distiller.train()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
        batches = self.train_batches.iter_from(order, step) if step > 0 else iter(self.train_batches)  # type: ignore[attr-defined]
        total = len(self.train_batches) if hasattr(self.train_batches, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(
            total=total,
            initial=step,
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
            unit="batch",
        )
        while True:
            before = self.generator.get_state() if self.generator is not None else None
            if not self.ddp and self.stop.requested:
                self._interrupt(
                    epoch,
                    step,
                    before,
                    order,
                    sums,
                    correct,
                    seen,
                    lr,
                    prior + time.perf_counter() - epoch_start,
                    self.stop.signum,
                )
            try:
                images, targets = next(batches)
            except StopIteration:
                break
            except Exception:
                if not (self.ddp and self.stop.requested):
                    if self.stop.requested:  # the signal also stopped the loader's workers
                        self._interrupt(
                            epoch,
                            step,
                            before,
                            order,
                            sums,
                            correct,
                            seen,
                            lr,
                            prior + time.perf_counter() - epoch_start,
                            self.stop.signum,
                        )
                    raise
                images = targets = None
            if order is None and step == 0:
                order = getattr(self.train_batches, "order", None)  # drawn by the first batch
            factor = 1.0
            if self.ddp:
                b = 0 if targets is None else targets.shape[0]
                m, stops, sig = distributed.all_reduce_sum(
                    [b, float(self.stop.requested), float(self.stop.signum or 0)]
                )
                if stops:
                    signum = self.stop.signum or int(round(sig / stops))
                    self._interrupt(
                        epoch,
                        step,
                        before,
                        order,
                        sums,
                        correct,
                        seen,
                        lr,
                        prior + time.perf_counter() - epoch_start,
                        signum,
                    )
                if m < self.world:  # a last batch smaller than the world: some rank would get nothing
                    step += 1
                    bar.update(1)
                    continue
                factor = b * self.world / m  # DDP averages over ranks; weigh uneven parts as one global mean
            assert images is not None and targets is not None
            images = self.speed.prepare_input(images)
            with self.speed.autocast(self.device):
                # Training progress in epochs at the end of this step (a per-step warm-up ramps smoothly).
                progress = epoch - 1 + (step + 1) / total if total else float(epoch)
                logits, losses = distiller.forward_train(images, targets, progress)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            backward = loss * factor if factor != 1.0 else loss
            if self.scaler is not None:
                self.scaler.scale(backward).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                backward.backward()
                optimizer.step()
            b = targets.shape[0]
            seen += b
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * b
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * b
            correct += int((logits.detach().argmax(1) == targets).sum())
            step += 1
            bar.update(1)
            if self.progress:
                bar.set_postfix(loss=f"{sums['loss'] / max(seen, 1):.4f}", refresh=False)
        bar.close()
        sums, correct, seen = self._reduce_train(sums, correct, seen)
        if self.ddp:
            distributed.broadcast_buffers(self.student)
        self.scheduler.step()
        self.train_seen += seen
        val = self._evaluate(self.val_batches)
        self.eval_seen += int(val["images"])
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": sums.pop("loss") / seen,
            **{f"train_{k}": v / seen for k, v in sums.items()},
            "train_top1": 100.0 * correct / seen,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "seconds": prior + time.perf_counter() - epoch_start,
        }
        meta = {**self.checkpoint_meta, "epoch": epoch, "val_top1": val["top1"], "val_top5": val["top5"]}
        if self.main:
            save_checkpoint(self.run_dir / "last.safetensors", self.student, meta)
        if val["top1"] > self.best_val:
            self.best_val, self.best_epoch = val["top1"], epoch
            if self.main:
                save_checkpoint(self.run_dir / "best.safetensors", self.student, meta)
        record["best_epoch"] = self.best_epoch
        self.history.append(record)
        if self.main:
            JsonlWriter(self.run_dir / "metrics.jsonl").write(record)
            if sink is not None:
                sink.write(record, epoch)
        self.checkpoint = self._save(epoch, None, self.generator.get_state() if self.generator is not None else None)
        self.log(
            f"epoch {epoch:>3}/{cfg.epochs}  loss {record['train_loss']:.4f}  train {record['train_top1']:.2f}%  "
            f"val {val['top1']:.2f}% (best {self.best_val:.2f}% @ {self.best_epoch})  lr {lr:.4g}  {record['seconds']:.1f}s"
        )

    def _reduce_train(self, sums: dict[str, float], correct: int, seen: int) -> tuple[dict[str, float], int, int]:
        if not self.ddp:
            return sums, correct, seen
        keys = list(sums)
        values = distributed.all_reduce_sum([sums[k] for k in keys] + [correct, seen])
        return dict(zip(keys, values[: len(keys)])), int(values[-2]), int(values[-1])

    def _evaluate(self, batches: Batches) -> dict[str, float]:
        counts = evaluate_counts(
            self.student,
            batches,
            prepare=self.speed.prepare_input if self.speed.channels_last else None,
            autocast=(lambda: self.speed.autocast(self.device)) if self.speed.amp != "none" else None,
        )
        if self.ddp and getattr(batches, "shard", None) is not None:  # each rank saw its part
            counts = dict(zip(COUNT_KEYS, distributed.all_reduce_sum([counts[k] for k in COUNT_KEYS])))
        return accuracy(counts)

    def _test(self) -> tuple[dict[str, float] | None, dict[str, float] | None]:
        if self.test_batches is None:
            return None, None
        test_last = self._evaluate(self.test_batches)
        state = load_checkpoint(self.run_dir / "best.safetensors")[0] if self.main else None
        state = distributed.broadcast_object(state)
        last_state = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        self.student.load_state_dict(state)
        test_best = self._evaluate(self.test_batches)
        self.student.load_state_dict(last_state)
        return test_best, test_last

    # ------------------------------------------------------------------ stopping

    def _check_stop_at_epoch_end(self, epoch: int) -> None:
        stops, sig = (
            distributed.all_reduce_sum([float(self.stop.requested), float(self.stop.signum or 0)])
            if self.ddp
            else (float(self.stop.requested), float(self.stop.signum or 0))
        )
        if stops:
            distributed.barrier()
            raise TrainingInterrupted(
                self.stop.signum or int(round(sig / stops)), self._checkpoint_path(), f"at the end of epoch {epoch}"
            )

    def _interrupt(
        self,
        epoch: int,
        step: int,
        generator_state: torch.Tensor | None,
        order: torch.Tensor | None,
        sums: dict[str, float],
        correct: int,
        seen: int,
        lr: float,
        seconds: float,
        signum: int | None,
    ) -> None:
        """Save where the epoch stands (when the batches can restart mid-epoch), then raise on every rank."""
        total = len(self.train_batches) if hasattr(self.train_batches, "__len__") else "?"  # type: ignore[arg-type]
        where = f"in epoch {epoch} after batch {step}/{total}"
        if self.resumable:
            sums, correct, seen = self._reduce_train(dict(sums), correct, seen)
            position = Position(epoch, step, seen, correct, sums, lr, seconds, order if step > 0 else None)
            self.checkpoint = self._save(epoch - 1, position, generator_state)
        elif self._checkpoint_path() is not None:
            where += f" (these batches cannot restart mid-epoch: it resumes at the start of epoch {epoch})"
        distributed.barrier()  # rank 0 has written before any rank exits (torchrun stops the others when one does)
        raise TrainingInterrupted(signum or signal.SIGTERM, self._checkpoint_path(), where)

    def _checkpoint_path(self) -> Path | None:
        if self.checkpoint is not None:
            return self.checkpoint
        p = self.run_dir / RESUME_JSON
        return p if self.main and p.is_file() else None

    # ------------------------------------------------------------------ resume checkpoint

    def _save(self, epochs_done: int, position: Position | None, generator_state: torch.Tensor | None) -> Path | None:
        rng = distributed.all_gather_object(capture_rng())
        if not self.main:
            return self.run_dir / RESUME_JSON  # rank 0 writes it
        source = getattr(self.distiller, "source", None)
        state = TrainingState(
            epoch=epochs_done,
            identity=self.identity,
            model=self.student.state_dict(),
            extra=self._extra_state(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            history=list(self.history),
            best_val_top1=self.best_val,
            best_epoch=self.best_epoch,
            train_images_seen=self.train_seen + (position.seen if position is not None else 0),
            eval_images_seen=self.eval_seen,
            seconds=self._elapsed(),
            rng=rng,
            generator=generator_state,
            position=position,
            source_seconds=getattr(source, "seconds", None),
            world_size=self.world,
            speed=self.speed.to_dict(),
        )
        return save_state(self.run_dir, state)

    def _extra_state(self) -> dict[str, torch.Tensor]:
        """A distiller's own state (parameters or buffers outside the student and the soft-target source)."""
        return {k: v for k, v in self.distiller.state_dict().items() if not k.startswith(("student.", "source."))}

    def _load_resume(self, resume: Resume) -> tuple[TrainingState | None, str | None]:
        """Rank 0 reads and checks the checkpoint; every rank gets it (or the same error)."""
        payload: Any = None
        if self.main:
            try:
                payload = ("ok", *self._read_resume(resume))
            except ReffAKDError as exc:
                payload = ("error", str(exc))
        payload = distributed.broadcast_object(payload)
        if payload[0] == "error":
            raise ReffAKDError(payload[1])
        return payload[1], payload[2]

    def _read_resume(self, resume: Resume) -> tuple[TrainingState | None, str | None]:
        if resume is False or resume is None:
            return None, None
        path = self.run_dir / RESUME_JSON if resume is True else resume_json_path(resume)
        if not path.is_file():
            if resume is True:
                self.log(f"no resume checkpoint in {self.run_dir}: starting at epoch 1")
                metrics = self.run_dir / "metrics.jsonl"
                if metrics.exists():  # lines of a run that stopped before its first checkpoint
                    write_text_atomic(metrics, "")
                return None, None
            raise ReffAKDError(
                f"no resume checkpoint at {resume}; expected a run folder holding {RESUME_JSON} or that file"
            )
        state = load_state(path)
        diff = identity_mismatch(state.identity, self.identity)
        if diff:
            raise ReffAKDError(
                f"resume checkpoint {path} is from a different run ({'; '.join(diff[:4])}); "
                "resume with the same settings or start a new run folder"
            )
        if state.position is not None and state.position.next_batch > 0 and not self.resumable:
            raise ReffAKDError(
                f"resume checkpoint {path} stopped inside epoch {state.position.epoch}, "
                "but these training batches cannot restart mid-epoch (no iter_from)"
            )
        if path.parent.resolve() != self.run_dir.resolve():
            for name in ("best.safetensors", "best.json", "last.safetensors", "last.json"):
                src = path.parent / name
                if src.is_file():
                    write_with(self.run_dir / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
        # The log holds each epoch once: exactly those the checkpoint has seen.
        lines = "".join(json.dumps(r, default=_json_default) + "\n" for r in state.history)
        write_text_atomic(self.run_dir / "metrics.jsonl", lines)
        where = (
            f"inside epoch {state.position.epoch} at batch {state.position.next_batch}"
            if state.position
            else f"after epoch {state.epoch}"
        )
        self.log(
            f"resuming from {path} ({where})"
            + (f"; it ran on {state.world_size} processes, now {self.world}" if state.world_size != self.world else "")
        )
        return state, str(path)

    def _restore_training(self, state: TrainingState) -> None:
        self.student.load_state_dict(state.model)
        if state.extra:
            self.distiller.load_state_dict({**self.distiller.state_dict(), **state.extra})
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        source = getattr(self.distiller, "source", None)
        if state.source_seconds is not None and source is not None and hasattr(source, "seconds"):
            source.seconds = state.source_seconds
        self.history = [dict(r) for r in state.history]
        self.best_val, self.best_epoch = state.best_val_top1, state.best_epoch
        pos_seen = state.position.seen if state.position is not None else 0
        self.train_seen, self.eval_seen = state.train_images_seen - pos_seen, state.eval_images_seen
        self.prior_seconds = state.seconds

    def _restore_random(self, state: TrainingState) -> None:
        if state.rng:
            r = distributed.rank()
            restore_rng(state.rng[r] if r < len(state.rng) else state.rng[0])
        if self.generator is not None and state.generator is not None:
            self.generator.set_state(state.generator)
