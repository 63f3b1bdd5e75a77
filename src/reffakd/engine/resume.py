"""The resume checkpoint: everything a stopped run needs to continue as if it had never stopped.

One file, ``resume.safetensors``, and no pickle: its tensors are the trained module's weights, the
optimiser buffers, the random-generator states and the epoch's data order; the rest (epoch, the
epoch in progress, history, best score, scheduler, Python/NumPy random states, the task's own
state) is JSON in the file's header metadata, beside a SHA-256 of that JSON and of every tensor.

Each save writes a temporary file in the same folder, fsyncs it, renames it over
``resume.safetensors`` and fsyncs the folder. A rename is atomic, so a crash at any moment leaves
the previous checkpoint or the new one, whole, never a mix (a leftover temporary file is ignored
and cleared by the next save); a damaged file fails its checksum and is one clear error.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ReffAKDError
from ..io import read_safetensors, write_with
from ..rundir import RESUME_FILE

FORMAT = "reffakd-resume"
VERSION = 2


# ----------------------------------------------------------------------------- what is saved


@dataclass
class EpochState:
    """An epoch in progress: what the loop accumulates step by step, and all a resume needs to finish it.

    The loop creates one per epoch and mutates it; an interrupted epoch is saved as it stands (its sums
    reduced over the ranks) and continues from ``step`` when resumed. ``generator`` (the data
    generator's state before batch ``step``) and ``started`` belong to the running session: the
    checkpoint keeps the generator state once, as ``TrainingState.generator``.
    """

    epoch: int
    lr: float  # the learning rate of this epoch (logged)
    step: int = 0  # batches done: the next batch to run
    seen: int = 0  # images trained on so far
    # Each loss (and "loss", their total) times its batch size, and the task's per-batch counts (correct
    # predictions...): device tensors while the epoch runs (no host sync per step), numbers once reduced.
    sums: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # time spent on this epoch in earlier sessions
    order: torch.Tensor | None = None  # the epoch's permutation (None: not drawn yet, or unshuffled)
    generator: torch.Tensor | None = None
    started: float = field(default_factory=time.perf_counter)

    def add(self, batch: int, loss: torch.Tensor, losses: dict[str, torch.Tensor], counts: dict[str, Any]) -> None:
        """One step's losses (batch means) and counts, added on their device: nothing waits for the device here."""
        self.seen += batch
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().double() * batch
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss.detach().double() * batch
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        self.step += 1

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        """The sums and counts as numbers: one read from the device for the epoch."""
        keys, values = [*self.sums, *self.counts], [*self.sums.values(), *self.counts.values()]
        if not values:  # no step yet: a stop between epochs, or at a resumed epoch's first step
            return {}, {}
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
        numbers = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]).tolist()
        out = dict(zip(keys, numbers))
        return {k: out[k] for k in self.sums}, {k: out[k] for k in self.counts}

    def elapsed(self) -> float:
        """Seconds spent on this epoch, earlier sessions included."""
        return self.seconds + time.perf_counter() - self.started


@dataclass
class TrainingState:
    epoch: int  # epochs completed
    identity: dict[str, Any]  # what makes it the same run: model, data, method, seed, optimiser settings
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[dict[str, Any]]
    best_value: float | None  # the task's selection metric at ``best_epoch`` (None: no epoch yet)
    best_epoch: int
    train_images_seen: int = 0
    eval_images_seen: int = 0
    seconds: float = 0.0  # training time over all sessions so far
    extra: dict[str, Any] = field(default_factory=dict)  # the task's state beside the module (Task.extra_state)
    scaler: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)  # per rank: python, numpy, torch, cuda
    generator: torch.Tensor | None = None  # the data-order/augmentation generator, where training continues
    running: EpochState | None = None  # the epoch in progress; None: stopped at an epoch boundary
    world_size: int = 1
    speed: dict[str, Any] = field(default_factory=dict)
    generation: int = 0  # how many times this run folder's checkpoint was written (set when saved or read)


# ----------------------------------------------------------------------------- random states


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when CUDA is in use) every CUDA device's generator state."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ----------------------------------------------------------------------------- nested state <-> JSON + tensors


def pack(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of ``obj`` whose tensors move to ``tensors`` under dotted keys.

    Dicts keep their key types (optimiser state is keyed by int), tuples and Counters (MultiStepLR's
    milestones) their type, so ``unpack`` returns what ``load_state_dict`` expects.
    """
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, collections.Counter):
        return {"__counter__": [[k, v] for k, v in obj.items()]}
    if isinstance(obj, dict):
        return {"__dict__": [[k, pack(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {key} in a resume checkpoint")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__counter__" in obj:
            return collections.Counter({k: v for k, v in obj["__counter__"]})
        if "__dict__" in obj:
            return {k: unpack(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
    return obj


def _to_files(state: TrainingState) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {
        "epoch": state.epoch,
        "identity": state.identity,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "train_images_seen": state.train_images_seen,
        "eval_images_seen": state.eval_images_seen,
        "seconds": state.seconds,
        "world_size": state.world_size,
        "speed": state.speed,
        "history": state.history,
        "model": sorted(state.model),
        "extra": pack(state.extra, "extra", tensors),
        "optimizer": pack(state.optimizer, "optimizer", tensors),
        "scheduler": pack(state.scheduler, "scheduler", tensors),
        "scaler": pack(state.scaler, "scaler", tensors),
        "rng": pack(state.rng, "rng", tensors),
        "generator": pack(state.generator, "generator", tensors),
        "running": None,
    }
    tensors.update({f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.items()})
    if state.running is not None:
        r = state.running
        meta["running"] = {
            "epoch": r.epoch,
            "lr": r.lr,
            "step": r.step,
            "seen": r.seen,
            "sums": r.sums,
            "counts": r.counts,
            "seconds": r.seconds,
            "order": pack(r.order, "running.order", tensors),
        }
    return meta, tensors


def _from_files(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TrainingState:
    r = meta.get("running")
    running = None
    if r is not None:
        running = EpochState(
            r["epoch"],
            r["lr"],
            step=r["step"],
            seen=r["seen"],
            sums=dict(r["sums"]),
            counts=dict(r["counts"]),
            seconds=r["seconds"],
            order=unpack(r["order"], tensors),
        )
    return TrainingState(
        epoch=meta["epoch"],
        identity=meta["identity"],
        model={k: tensors[f"model.{k}"] for k in meta["model"]},
        extra=unpack(meta["extra"], tensors),
        optimizer=unpack(meta["optimizer"], tensors),
        scheduler=unpack(meta["scheduler"], tensors),
        scaler=unpack(meta["scaler"], tensors),
        history=meta["history"],
        best_value=meta["best_value"],
        best_epoch=meta["best_epoch"],
        train_images_seen=meta["train_images_seen"],
        eval_images_seen=meta["eval_images_seen"],
        seconds=meta["seconds"],
        rng=unpack(meta["rng"], tensors),
        generator=unpack(meta["generator"], tensors),
        running=running,
        world_size=meta.get("world_size", 1),
        speed=meta.get("speed", {}),
    )


# ----------------------------------------------------------------------------- the file


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the JSON state and of every tensor (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(text.encode("utf-8"))
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _header(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def _generation(path: Path) -> int:
    """The generation of the checkpoint at ``path`` (0 when there is none or it cannot be read)."""
    try:
        return int(_header(path).get("generation", 0)) if path.is_file() else 0
    except (SafetensorError, OSError, ValueError):
        return 0


def _write(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Temporary file, fsync, rename over ``path``, fsync the folder."""

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=header)
        _fsync_file(tmp)

    write_with(path, write)
    _fsync_dir(path.parent)


def save_state(run_dir: str | os.PathLike[str], state: TrainingState, name: str = RESUME_FILE) -> Path:
    """Write the checkpoint crash-safely (see the module docstring); return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(f".{name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    path = run_dir / name
    meta, tensors = _to_files(state)
    text = json.dumps(meta)
    generation = _generation(path) + 1
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "generation": str(generation),
        "state": text,
        "sha256": _digest(text, tensors),
    }
    _write(path, tensors, header)
    state.generation = generation
    return path


def resume_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file itself, or the one inside a run folder."""
    path = Path(path)
    return path / RESUME_FILE if path.is_dir() else path


def load_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read and check a resume checkpoint (a run folder or its file); one clear error if it is not whole."""
    p = resume_path(path)
    tensors = read_safetensors(p, "resume checkpoint", "a training run at each epoch end")
    try:
        header = _header(p)
    except (SafetensorError, OSError) as exc:
        raise ReffAKDError(f"resume checkpoint {p} is unreadable ({exc})") from None
    if header.get("format") != FORMAT:
        raise ReffAKDError(f"{p} is not a reffakd resume checkpoint")
    if header.get("version") != str(VERSION):
        raise ReffAKDError(
            f"resume checkpoint {p} has format version {header.get('version')}; this reffakd reads version {VERSION}"
        )
    text = header.get("state", "")
    if _digest(text, tensors) != header.get("sha256"):
        raise ReffAKDError(f"resume checkpoint {p} is damaged (checksum differs): it was changed after it was written")
    try:
        state = _from_files(json.loads(text), tensors)
        state.generation = int(header["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReffAKDError(f"resume checkpoint {p} is incomplete ({type(exc).__name__}: {exc})") from None
    check_consistent(state, p)
    return state


def check_consistent(state: TrainingState, path: Path) -> None:
    """The checkpoint agrees with itself: its epoch count is the epochs its history holds, in order (an edited epoch
    would make a one-epoch run look finished)."""
    epochs = [r.get("epoch") if isinstance(r, dict) else None for r in state.history]
    running = state.running.epoch if state.running is not None else state.epoch + 1
    if (
        isinstance(state.epoch, bool)
        or not isinstance(state.epoch, int)
        or epochs != list(range(1, state.epoch + 1))
        or not 0 <= state.best_epoch <= state.epoch
        or running != state.epoch + 1
    ):
        raise ReffAKDError(
            f"resume checkpoint {path} does not agree with itself (epoch {state.epoch!r}, history of epochs "
            f"{epochs[:3]}{'...' if len(epochs) > 3 else ''}): it was changed after it was written; remove it to start "
            "over"
        )


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings (dotted names) in which two runs differ; JSON-normalised so tuples equal lists."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    out: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{where}.{k}" if where else k)
        elif x != y:
            out.append(f"{where} {x!r} -> {y!r}")

    walk(a, b, "")
    return out
