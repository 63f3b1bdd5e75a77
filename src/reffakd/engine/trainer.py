"""The one training loop: every student and the autoencoder train through it.

What it trains is a ``Task`` (``engine.task``): a distiller around a student, or the autoencoder of
the soft labels. Each epoch: the task's training steps (named losses, summed and logged), its
evaluation on the validation split, a JSON line, ``last`` and, when the task's validation metric
improves, ``best``, and the resume checkpoint (``resume.safetensors``, see ``engine.resume``). At
the end both are evaluated once on the test split, when there is one; the test set never chooses
anything.

A run survives: SIGINT/SIGTERM finish the current step, write the resume checkpoint (mid-epoch
included) and raise ``TrainingInterrupted``; ``resume=True`` continues to the same weights, bit for
bit, as a run never stopped. The epoch in progress lives in one object (``resume.EpochState``)
that the loop mutates and the checkpoint saves. Under torchrun the task's module is wrapped in
DistributedDataParallel, batch norm spans the global batch, metrics are summed over the ranks, and
rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..errors import ReffAKDError
from ..io import JsonlWriter, _json_default, sidecar_json, write_text_atomic, write_with
from ..models.checkpoint import load_checkpoint, save_checkpoint
from . import distributed
from .cudagraph import BatchGraph, StepGraph, batch_graph, refuse_unrecordable
from .divergence import LOSS_CHECK_STEPS, check_loss, check_record
from .logsinks import TENSORBOARD_DIR, TensorBoardSink, require_tensorboard
from .optim import OptimConfig, build_optimizer, build_scheduler
from .options import Resume, TrainOptions
from .resume import (
    RESUME_FILE,
    EpochState,
    TrainingState,
    capture_rng,
    identity_mismatch,
    load_state,
    restore_rng,
    resume_path,
    save_state,
)
from .signals import StopSignals, TrainingInterrupted
from .syncbn import convert_sync_batchnorm, revert_sync_batchnorm
from .task import Step, Task

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
# Host syncs off the hot path: the progress bar reads the running loss every PROGRESS_EVERY steps; under torchrun
# the ranks agree on a stop signal every SIGNAL_POLL_STEPS steps (a signal stops the run at most that many steps later).
PROGRESS_EVERY = 20
SIGNAL_POLL_STEPS = 10


@dataclass(frozen=True)
class RunFiles:
    """The names ``fit`` writes in its run folder; ``best=None``: no best checkpoint (the selection is still logged)."""

    metrics: str = "metrics.jsonl"
    last: str = "last.safetensors"
    best: str | None = "best.safetensors"
    resume: str = RESUME_FILE


STUDENT_FILES = RunFiles()


@dataclass(frozen=True)
class FitBatches:
    """What the loop reads: the training batches, the validation batches (they choose ``best``) and the test batches
    (read once at the end, choosing nothing; None: no test split)."""

    train: Batches
    val: Batches
    test: Batches | None = None


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float | None  # the task's selection metric (``selection``) at ``best_epoch``
    test_best: dict[str, float] | None
    test_last: dict[str, float] | None
    train_images_seen: int
    eval_images_seen: int
    seconds: float  # training time of all sessions, resumed ones included
    resumed_from: str | None = None  # the resume checkpoint this session started from
    prior_seconds: float = 0.0  # of ``seconds``, those spent before this session
    selection: str = "val_top1"  # the record key ``best_value`` comes from

    @property
    def best_val_top1(self) -> float:
        """A classifier's best validation top-1 (its selection metric)."""
        if self.selection != "val_top1" or self.best_value is None:
            raise AttributeError(f"this run was selected on {self.selection}, not val_top1")
        return self.best_value


def fit(
    task: Task,
    batches: FitBatches,
    cfg: OptimConfig,
    run_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    checkpoint_meta: dict[str, Any],
    files: RunFiles = STUDENT_FILES,
) -> FitResult:
    """Train ``task.trainable()``; write its metrics log, ``last``/``best`` and the resume checkpoint in ``run_dir``.

    ``options``: resume, speed, logging and torchrun (``TrainOptions``; None: its defaults). ``checkpoint_meta``:
    what every checkpoint records (with the optimiser and the speed options, the identity a resume must match).
    ``files``: the file names.
    """
    return _Fit(task, batches, cfg, Path(run_dir), checkpoint_meta, options or TrainOptions(), files).run()


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    return torch.device("cpu")


class _Fit:
    """One call of ``fit``: the loop's state in one place, so checkpoints can capture all of it."""

    def __init__(
        self,
        task: Task,
        batches: FitBatches,
        cfg: OptimConfig,
        run_dir: Path,
        checkpoint_meta: dict[str, Any],
        options: TrainOptions,
        files: RunFiles,
    ) -> None:
        cfg.validate()
        self.task, self.module = task, task.trainable()
        train_batches = batches.train
        self.train_batches, self.val_batches, self.test_batches = train_batches, batches.val, batches.test
        self.cfg, self.run_dir, self.checkpoint_meta, self.files = cfg, run_dir, checkpoint_meta, files
        self.device = _device_of(self.module)
        if distributed.is_distributed() and not distributed.is_initialized():
            raise ReffAKDError(
                "under torchrun join the process group before building the model: "
                "TrainOptions(device=reffakd.engine.distributed.setup(device)), and build the model on that device"
            )
        self.ddp = distributed.active()
        self.main = distributed.is_main_process()
        self.world = distributed.world_size()
        options = options.on_this_rank()
        self.options, self.progress, self.log = options, options.progress, options.log
        self.speed = speed = options.speed
        speed.validate(self.device)
        if options.tensorboard:
            require_tensorboard()
        if self.ddp:
            distributed.check_batch_size(cfg.batch_size)
            if getattr(train_batches, "shard", None) != distributed.shard():
                raise ReffAKDError(
                    "under torchrun the training batches must be this rank's shard: "
                    "make_batches(..., shard=reffakd.engine.distributed.shard())"
                )
        self.generator: torch.Generator | None = getattr(train_batches, "generator", None)
        self.resumable = callable(getattr(train_batches, "iter_from", None))
        self.optimizer = build_optimizer(self.module.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = speed.grad_scaler(self.device)
        self.step_graph = self._step_graph() if speed.cuda_graph else None
        # The in-memory loader's gather, augment and scale of each batch recorded too (while the loop runs).
        self.batch_graph: BatchGraph | None = batch_graph(train_batches) if speed.cuda_graph else None
        self.identity = {
            "run": {k: v for k, v in checkpoint_meta.items() if k != "reffakd_version"},
            "optim": cfg.to_dict(),
            "speed": speed.to_dict(),  # amp, channels_last, compile: a resume continues with the same numerics
        }
        self.selection = task.selection
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.best_epoch = 0
        self.train_seen = self.eval_seen = 0
        self.prior_seconds = 0.0
        self.session_start = time.perf_counter()
        self.checkpoint: Path | None = None  # the latest resume checkpoint
        self.stop = StopSignals(False)

    def _step_graph(self) -> StepGraph:
        if self.ddp:
            raise ReffAKDError(
                "cuda_graph records the step of one process; under torchrun train without cuda_graph",
                params=("cuda_graph",),
            )
        refuse_unrecordable(self.task)
        return StepGraph(self._train_step, self.device)

    # ------------------------------------------------------------------ the run

    def run(self) -> FitResult:
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        state, resumed_from = self._load_resume(self.options.resume)
        with contextlib.ExitStack() as stack:
            if self.batch_graph is not None:
                stack.enter_context(self.batch_graph)
            if state is not None:
                self._restore_training(state)
            if self.ddp and self.options.sync_batchnorm:
                swaps = convert_sync_batchnorm(self.module, self.device)
                stack.callback(revert_sync_batchnorm, swaps)
            self.speed.prepare_model(self.module)
            if self.ddp:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                stack.enter_context(self.task.ddp(lambda m: DistributedDataParallel(m, device_ids=ids)))
            if state is not None:
                self._restore_random(state)
            sink: TensorBoardSink | None = None
            if self.options.tensorboard and self.main:
                sink = TensorBoardSink(
                    self.run_dir / TENSORBOARD_DIR, purge_step=(state.epoch + 1) if state is not None else None
                )
                stack.callback(sink.close)
            running = state.running if state is not None else None
            start = state.epoch + 1 if state is not None else 1
            self.session_start = time.perf_counter()
            with StopSignals(self.options.handle_signals) as self.stop:
                for epoch in range(start, self.cfg.epochs + 1):
                    self._epoch(epoch, running if running is not None and running.epoch == epoch else None, sink)
                    self._check_stop_at_epoch_end(epoch)
            seconds = self._elapsed()
            test_best, test_last = self._test()
        return FitResult(
            self.history,
            self.best_epoch,
            self.best,
            test_best,
            test_last,
            self.train_seen,
            self.eval_seen,
            seconds,
            resumed_from,
            self.prior_seconds,
            self.selection.key,
        )

    def _elapsed(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.session_start

    def _start_epoch(self, epoch: int, resumed: EpochState | None) -> EpochState:
        if resumed is None:
            return EpochState(epoch, self.optimizer.param_groups[0]["lr"])
        # The rest of an interrupted epoch; the sums so far live on rank 0 (they are summed over the ranks).
        ep = replace(resumed, started=time.perf_counter())
        if self.ddp and not self.main:
            ep.sums = {k: 0.0 for k in ep.sums}
            ep.counts = {k: 0 for k in ep.counts}
            ep.seen = 0
        return ep

    def _epoch(self, epoch: int, resumed: EpochState | None, sink: TensorBoardSink | None) -> None:
        cfg, task, prefix = self.cfg, self.task, self.task.log_prefix
        ep = self._start_epoch(epoch, resumed)
        if self.step_graph is not None:
            self.step_graph.new_epoch(self.optimizer.param_groups[0]["lr"])  # the recorded update holds it
        task.train()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
        batches = self.train_batches.iter_from(ep.order, ep.step) if ep.step > 0 else iter(self.train_batches)  # type: ignore[attr-defined]
        total = len(self.train_batches) if hasattr(self.train_batches, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(
            total=total,
            initial=ep.step,
            desc=f"{prefix}epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
            unit="batch",
        )
        while True:
            ep.generator = self.generator.get_state() if self.generator is not None else None
            if not self.ddp and self.stop.requested:
                self._interrupt(ep, self.stop.signum)
            extra: list[torch.Tensor] = []  # what a batch carries beyond (images, labels): its split indices
            try:
                images, targets, *extra = next(batches)
            except StopIteration:
                break
            except Exception:
                if not (self.ddp and self.stop.requested):
                    if self.stop.requested:  # the signal also stopped the loader's workers
                        self._interrupt(ep, self.stop.signum)
                    raise
                images = targets = None
            if ep.order is None and ep.step == 0:
                ep.order = getattr(self.train_batches, "order", None)  # drawn by the first batch
            factor = 1.0
            if self.ddp:
                b = 0 if targets is None else targets.shape[0]
                m = self._global_batch(ep.step)
                if m is None or ep.step % SIGNAL_POLL_STEPS == 0:  # every rank polls at the same steps
                    total_b, stops, sig = distributed.all_reduce_sum(
                        [b, float(self.stop.requested), float(self.stop.signum or 0)]
                    )
                    m = int(total_b)
                    if stops:
                        self._interrupt(ep, self.stop.signum or int(round(sig / stops)))
                if m < self.world:  # a last batch smaller than the world: some rank would get nothing
                    ep.step += 1
                    bar.update(1)
                    continue
                factor = b * self.world / m  # DDP averages over ranks; weigh uneven parts as one global mean
            assert images is not None and targets is not None
            images = self.speed.prepare_input(images)
            # Training progress in epochs at the end of this step (a per-step warm-up ramps smoothly).
            progress = epoch - 1 + (ep.step + 1) / total if total else float(epoch)
            if self.step_graph is not None:
                loss, step = self.step_graph((images, targets, *extra), progress=progress)
            else:
                loss, step = self._train_step(images, targets, *extra, progress=progress, factor=factor)
            ep.add(targets.shape[0], loss, step.losses, step.counts)
            if not self.ddp and ep.step % LOSS_CHECK_STEPS == 0:  # under DDP the ranks stop together, at the record
                check_loss(ep.sums["loss"], epoch, ep.step, ep.lr, task.log_prefix)
            bar.update(1)
            if self.progress and ep.step % PROGRESS_EVERY == 0:  # reading the loss waits for the device
                bar.set_postfix(loss=f"{float(ep.sums['loss']) / max(ep.seen, 1):.4f}", refresh=False)
        bar.close()
        self._end_epoch(ep, sink)

    def _train_step(
        self, images: torch.Tensor, targets: torch.Tensor, *extra: torch.Tensor, progress: float, factor: float = 1.0
    ) -> tuple[torch.Tensor, Step]:
        """One step: the task's forward and losses, backward, the update; what ``cuda_graph`` records and replays."""
        with self.speed.autocast(self.device):
            step = self.task.training_step(images, targets, progress, *extra)
        loss = sum(step.losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        backward = loss * factor if factor != 1.0 else loss
        if self.scaler is not None:
            self.scaler.scale(backward).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            backward.backward()
            self.optimizer.step()
        # Detached: nothing the loop keeps holds this step's autograd graph (a graph kept alive across steps
        # makes autograd warn that the gradients' streams differ once a CUDA graph's warm-up ran on a side stream).
        losses = {k: v.detach() for k, v in step.losses.items()}
        return loss.detach(), replace(step, outputs=step.outputs.detach(), losses=losses)  # type: ignore[union-attr]

    def _global_batch(self, step: int) -> int | None:
        """Images in global batch ``step`` when the batches say (in-memory or worker-less: a signal cannot break
        them mid-epoch), so ranks need not all-reduce it every step; None: ask the ranks."""
        b = self.train_batches
        if getattr(b, "num_workers", 0) or not all(hasattr(b, k) for k in ("batch_size", "num_samples", "drop_last")):
            return None
        size, n = b.batch_size, b.num_samples  # type: ignore[attr-defined]
        return size if b.drop_last else min(size, n - step * size)  # type: ignore[attr-defined]

    def _end_epoch(self, ep: EpochState, sink: TensorBoardSink | None) -> None:
        epoch, files = ep.epoch, self.files
        sums, counts, seen = self._reduced(ep)
        end_epoch = getattr(self.task, "end_epoch", None)  # optional: a task whose sources learn per epoch
        if end_epoch is not None:
            end_epoch(epoch)
        if self.ddp:
            distributed.broadcast_buffers(self.module)
        self.scheduler.step()
        self.train_seen += seen
        val = self._evaluate(self.val_batches)
        self.eval_seen += int(val["images"])
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": ep.lr,
            "train_loss": sums.pop("loss") / seen,
            **{f"train_{k}": v / seen for k, v in sums.items()},
            **{f"train_{k}": v for k, v in self.task.train_metrics(counts, seen).items()},
            **{f"val_{k}": v for k, v in val.items() if k != "images"},
            "seconds": ep.elapsed(),
        }
        check_record(record, self.task.log_prefix)
        meta = {**self.checkpoint_meta, "epoch": epoch, **{k: record[k] for k in self.task.checkpoint_keys}}
        if self.main:
            save_checkpoint(self.run_dir / files.last, self.module, meta)
        if self.selection.better(record[self.selection.key], self.best):
            self.best, self.best_epoch = record[self.selection.key], epoch
            if self.main and files.best is not None:
                save_checkpoint(self.run_dir / files.best, self.module, meta)
        record["best_epoch"] = self.best_epoch
        self.history.append(record)
        if self.main:
            JsonlWriter(self.run_dir / files.metrics).write(record)
            if sink is not None:
                sink.write(record, epoch)
        self.checkpoint = self._save(epoch, None, self.generator.get_state() if self.generator is not None else None)
        self.log(
            f"{self.task.log_prefix}epoch {epoch:>3}/{self.cfg.epochs}  {self.task.epoch_summary(record, self.best)}  "
            f"lr {ep.lr:.4g}  {record['seconds']:.1f}s"
        )

    def _reduced(self, ep: EpochState) -> tuple[dict[str, float], dict[str, float], int]:
        """The epoch's sums, counts and images over all ranks."""
        sums, counts = ep.totals()  # the epoch's one read from the device
        if not self.ddp:
            return sums, counts, ep.seen
        ks, kc = list(sums), list(counts)
        values = distributed.all_reduce_sum([sums[k] for k in ks] + [counts[k] for k in kc] + [ep.seen])
        sums = dict(zip(ks, values[: len(ks)]))
        counts = dict(zip(kc, values[len(ks) : len(ks) + len(kc)]))
        return sums, counts, int(values[-1])

    def _evaluate(self, batches: Batches) -> dict[str, float]:
        sums = self.task.evaluate(batches, self.speed, self.device)
        if self.ddp and getattr(batches, "shard", None) is not None:  # each rank saw its part
            keys = list(sums)
            sums = dict(zip(keys, distributed.all_reduce_sum([sums[k] for k in keys])))
        return self.task.val_metrics(sums)

    def _test(self) -> tuple[dict[str, float] | None, dict[str, float] | None]:
        if self.test_batches is None:
            return None, None
        test_last = self._evaluate(self.test_batches)
        if self.files.best is None:
            return None, test_last
        state = load_checkpoint(self.run_dir / self.files.best)[0] if self.main else None
        state = distributed.broadcast_object(state)
        last_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(state)
        test_best = self._evaluate(self.test_batches)
        self.module.load_state_dict(last_state)
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
                self.stop.signum or int(round(sig / stops)),
                self._checkpoint_path(),
                f"at the end of {self.task.log_prefix}epoch {epoch}",
            )

    def _interrupt(self, ep: EpochState, signum: int | None) -> None:
        """Save where the epoch stands (when the batches can restart mid-epoch), then raise on every rank."""
        total = len(self.train_batches) if hasattr(self.train_batches, "__len__") else "?"  # type: ignore[arg-type]
        where = f"in {self.task.log_prefix}epoch {ep.epoch} after batch {ep.step}/{total}"
        if self.resumable:
            if not self.ddp:  # never a checkpoint of weights a non-finite loss has reached
                check_loss(ep.sums.get("loss", 0.0), ep.epoch, ep.step, ep.lr, self.task.log_prefix)
            sums, counts, seen = self._reduced(ep)
            saved = replace(
                ep, sums=sums, counts=counts, seen=seen, seconds=ep.elapsed(), order=ep.order if ep.step > 0 else None
            )
            self.checkpoint = self._save(ep.epoch - 1, saved, ep.generator)
        elif self._checkpoint_path() is not None:
            where += f" (these batches cannot restart mid-epoch: it resumes at the start of epoch {ep.epoch})"
        distributed.barrier()  # rank 0 has written before any rank exits (torchrun stops the others when one does)
        raise TrainingInterrupted(signum or signal.SIGTERM, self._checkpoint_path(), where)

    def _checkpoint_path(self) -> Path | None:
        if self.checkpoint is not None:
            return self.checkpoint
        p = self.run_dir / self.files.resume
        return p if self.main and p.is_file() else None

    # ------------------------------------------------------------------ resume checkpoint

    def _save(self, epochs_done: int, running: EpochState | None, generator_state: torch.Tensor | None) -> Path:
        rng = distributed.all_gather_object(capture_rng())
        extra = self.task.extra_state()  # on every rank: a task may reduce its state over the ranks here
        if not self.main:
            return self.run_dir / self.files.resume  # rank 0 writes it
        state = TrainingState(
            epoch=epochs_done,
            identity=self.identity,
            model=self.module.state_dict(),
            extra=extra,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            history=list(self.history),
            best_value=self.best,
            best_epoch=self.best_epoch,
            train_images_seen=self.train_seen + (running.seen if running is not None else 0),
            eval_images_seen=self.eval_seen,
            seconds=self._elapsed(),
            rng=rng,
            generator=generator_state,
            running=running,
            world_size=self.world,
            speed=self.speed.to_dict(),
        )
        return save_state(self.run_dir, state, self.files.resume)

    def _load_resume(self, resume: Resume) -> tuple[TrainingState | None, str | None]:
        """Rank 0 reads and checks the checkpoint; every rank gets it (or the same error)."""
        payload: Any = None
        if self.main:
            try:
                payload = ("ok", *self._read_resume(resume))
            except ReffAKDError as exc:
                payload = ("error", str(exc), exc.params)
        payload = distributed.broadcast_object(payload)
        if payload[0] == "error":
            raise ReffAKDError(payload[1], params=payload[2])
        return payload[1], payload[2]

    def _read_resume(self, resume: Resume) -> tuple[TrainingState | None, str | None]:
        if resume is False or resume is None:
            return None, None
        files = self.files
        path = self.run_dir / files.resume if resume is True else resume_path(resume)
        if not path.is_file():
            if resume is True:
                self.log(f"no resume checkpoint in {self.run_dir}: starting at {self.task.log_prefix}epoch 1")
                metrics = self.run_dir / files.metrics
                if metrics.exists():  # lines of a run that stopped before its first checkpoint
                    write_text_atomic(metrics, "")
                return None, None
            raise ReffAKDError(
                f"no resume checkpoint at {resume}; expected a run folder holding {files.resume} or that file"
            )
        state = load_state(path)
        diff = identity_mismatch(state.identity, self.identity)
        if diff:
            raise ReffAKDError(
                f"resume checkpoint {path} is from a different run ({'; '.join(diff[:4])}); "
                "resume with the same settings or start a new run folder"
            )
        if state.running is not None and state.running.step > 0 and not self.resumable:
            raise ReffAKDError(
                f"resume checkpoint {path} stopped inside epoch {state.running.epoch}, "
                "but these training batches cannot restart mid-epoch (no iter_from)"
            )
        if path.parent.resolve() != self.run_dir.resolve():
            for name in (files.best, files.last):
                for src in (path.parent / name, sidecar_json(path.parent / name)) if name is not None else ():
                    if src.is_file():
                        write_with(self.run_dir / src.name, lambda tmp, src=src: shutil.copyfile(src, tmp))
        # The log holds each epoch once: exactly those the checkpoint has seen.
        lines = "".join(json.dumps(r, default=_json_default) + "\n" for r in state.history)
        write_text_atomic(self.run_dir / files.metrics, lines)
        where = (
            f"inside {self.task.log_prefix}epoch {state.running.epoch} at batch {state.running.step}"
            if state.running
            else f"after {self.task.log_prefix}epoch {state.epoch}"
        )
        self.log(
            f"resuming from {path} ({where})"
            + (f"; it ran on {state.world_size} processes, now {self.world}" if state.world_size != self.world else "")
        )
        return state, str(path)

    def _restore_training(self, state: TrainingState) -> None:
        self.module.load_state_dict(state.model)
        self.task.load_extra_state(state.extra)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        self.history = [dict(r) for r in state.history]
        self.best, self.best_epoch = state.best_value, state.best_epoch
        running_seen = state.running.seen if state.running is not None else 0
        self.train_seen, self.eval_seen = state.train_images_seen - running_seen, state.eval_images_seen
        self.prior_seconds = state.seconds

    def _restore_random(self, state: TrainingState) -> None:
        if state.rng:
            r = distributed.rank()
            restore_rng(state.rng[r] if r < len(state.rng) else state.rng[0])
        if self.generator is not None and state.generator is not None:
            self.generator.set_state(state.generator)
