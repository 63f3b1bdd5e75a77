"""The resume checkpoint: everything a stopped run needs to continue as if it had never stopped.

Two files, and no pickle: ``resume-<generation>.safetensors`` holds the tensors (student weights,
optimiser buffers, random-generator states, the epoch's data order) and ``resume.json`` the rest
(epoch, position inside it, history, best score, scheduler, Python/NumPy random states). The JSON
is written last and names the tensor file and its SHA-256; an older tensor file is removed only
after the new JSON is in place. A crash at any moment therefore leaves ``resume.json`` naming a
complete tensor file that matches it: the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ReffAKDError
from ..io import read_safetensors, write_with

RESUME_JSON = "resume.json"
FORMAT = "reffakd-resume"
VERSION = 1
_TENSOR_FILE = re.compile(r"^resume-(\d{6,})\.safetensors$")


def tensor_file_name(generation: int) -> str:
    return f"resume-{generation:06d}.safetensors"


# ----------------------------------------------------------------------------- what is saved


@dataclass
class Position:
    """Where inside an epoch a run stopped: the next batch, the epoch's data order and the partial sums."""

    epoch: int
    next_batch: int
    seen: int
    correct: int
    sums: dict[str, float]
    lr: float
    seconds: float
    order: torch.Tensor | None = None  # the epoch's permutation (None: unshuffled)


@dataclass
class TrainingState:
    epoch: int  # epochs completed
    identity: dict[str, Any]  # what makes it the same run: model, data, method, seed, optimiser settings
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[dict[str, Any]]
    best_val_top1: float
    best_epoch: int
    train_images_seen: int = 0
    eval_images_seen: int = 0
    seconds: float = 0.0  # training time over all sessions so far
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # a distiller's own state beside the student's
    scaler: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)  # per rank: python, numpy, torch, cuda
    generator: torch.Tensor | None = None  # the data-order/augmentation generator
    position: Position | None = None  # None: stopped at an epoch boundary
    source_seconds: float | None = None  # a teacher's forward time so far (cost ledger)
    world_size: int = 1
    speed: dict[str, Any] = field(default_factory=dict)


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
        "best_val_top1": state.best_val_top1,
        "best_epoch": state.best_epoch,
        "train_images_seen": state.train_images_seen,
        "eval_images_seen": state.eval_images_seen,
        "seconds": state.seconds,
        "world_size": state.world_size,
        "speed": state.speed,
        "source_seconds": state.source_seconds,
        "history": state.history,
        "model": sorted(state.model),
        "extra": sorted(state.extra),
        "optimizer": pack(state.optimizer, "optimizer", tensors),
        "scheduler": pack(state.scheduler, "scheduler", tensors),
        "scaler": pack(state.scaler, "scaler", tensors),
        "rng": pack(state.rng, "rng", tensors),
        "generator": pack(state.generator, "generator", tensors),
        "position": None,
    }
    tensors.update({f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.items()})
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in state.extra.items()})
    if state.position is not None:
        p = state.position
        meta["position"] = {
            "epoch": p.epoch,
            "next_batch": p.next_batch,
            "seen": p.seen,
            "correct": p.correct,
            "sums": p.sums,
            "lr": p.lr,
            "seconds": p.seconds,
            "order": pack(p.order, "position.order", tensors),
        }
    return meta, tensors


def _from_files(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TrainingState:
    p = meta.get("position")
    position = None
    if p is not None:
        position = Position(
            p["epoch"],
            p["next_batch"],
            p["seen"],
            p["correct"],
            dict(p["sums"]),
            p["lr"],
            p["seconds"],
            unpack(p["order"], tensors),
        )
    return TrainingState(
        epoch=meta["epoch"],
        identity=meta["identity"],
        model={k: tensors[f"model.{k}"] for k in meta["model"]},
        extra={k: tensors[f"extra.{k}"] for k in meta["extra"]},
        optimizer=unpack(meta["optimizer"], tensors),
        scheduler=unpack(meta["scheduler"], tensors),
        scaler=unpack(meta["scaler"], tensors),
        history=meta["history"],
        best_val_top1=meta["best_val_top1"],
        best_epoch=meta["best_epoch"],
        train_images_seen=meta["train_images_seen"],
        eval_images_seen=meta["eval_images_seen"],
        seconds=meta["seconds"],
        rng=unpack(meta["rng"], tensors),
        generator=unpack(meta["generator"], tensors),
        position=position,
        source_seconds=meta.get("source_seconds"),
        world_size=meta.get("world_size", 1),
        speed=meta.get("speed", {}),
    )


# ----------------------------------------------------------------------------- files


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _generations(run_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in run_dir.glob("resume-*.safetensors") if (m := _TENSOR_FILE.match(p.name)))


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], generation: int) -> None:
    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "generation": str(generation)})
        _fsync_file(tmp)

    write_with(path, write)


def _write_json(path: Path, meta: dict[str, Any]) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        _fsync_file(tmp)

    write_with(path, write)


def save_state(run_dir: str | os.PathLike[str], state: TrainingState) -> Path:
    """Write the checkpoint crash-safely (see the module docstring); return the path of ``resume.json``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".resume*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    meta, tensors = _to_files(state)
    generation = max(_generations(run_dir), default=0) + 1
    name = tensor_file_name(generation)
    _write_tensors(run_dir / name, tensors, generation)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "generation": generation,
        "tensors": name,
        "sha256": _sha256(run_dir / name),
        **meta,
    }
    _write_json(run_dir / RESUME_JSON, meta)
    _fsync_dir(run_dir)
    for g in _generations(run_dir):
        if g != generation:
            (run_dir / tensor_file_name(g)).unlink(missing_ok=True)
    return run_dir / RESUME_JSON


def remove_state(run_dir: str | os.PathLike[str]) -> None:
    """Delete a finished run's resume checkpoint (about twice the model's size), JSON first so no half remains."""
    run_dir = Path(run_dir)
    (run_dir / RESUME_JSON).unlink(missing_ok=True)
    for g in _generations(run_dir):
        (run_dir / tensor_file_name(g)).unlink(missing_ok=True)


def resume_json_path(path: str | os.PathLike[str]) -> Path:
    """``resume.json`` itself, or the one inside a run folder."""
    path = Path(path)
    return path / RESUME_JSON if path.is_dir() else path


def load_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read and cross-check a resume checkpoint (a run folder or its ``resume.json``); one clear error if it is not whole."""
    jp = resume_json_path(path)
    try:
        meta = json.loads(jp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReffAKDError(
            f"resume checkpoint {jp} is missing or malformed ({exc}); it is written by `reffakd train` at each epoch end"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ReffAKDError(f"{jp} is not a reffakd resume checkpoint")
    if meta.get("version") != VERSION:
        raise ReffAKDError(
            f"resume checkpoint {jp} has format version {meta.get('version')}; this reffakd reads version {VERSION}"
        )
    name = meta.get("tensors")
    if not isinstance(name, str) or not _TENSOR_FILE.match(name):
        raise ReffAKDError(f"resume checkpoint {jp} names no valid tensor file ({name!r})")
    tp = jp.parent / name
    if not tp.is_file():
        raise ReffAKDError(f"resume checkpoint {jp} names {name}, which does not exist")
    if _sha256(tp) != meta.get("sha256"):
        raise ReffAKDError(
            f"resume checkpoint {jp} does not match {name} (checksum differs): the tensor file was changed or damaged"
        )
    tensors = read_safetensors(tp, "resume tensors", "`reffakd train`")
    with safe_open(str(tp), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("generation") != str(meta.get("generation")):
        raise ReffAKDError(
            f"resume checkpoint {jp} is generation {meta.get('generation')} but {name} is {header.get('generation')}"
        )
    try:
        return _from_files(meta, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReffAKDError(f"resume checkpoint {jp} is incomplete ({type(exc).__name__}: {exc})") from None


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
