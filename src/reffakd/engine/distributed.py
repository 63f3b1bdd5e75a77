"""torchrun and DistributedDataParallel helpers.

torchrun starts one process per GPU (or CPU worker) and sets RANK, WORLD_SIZE and LOCAL_RANK. With
WORLD_SIZE > 1 every rank runs the same command: it joins the process group, trains its shard of
each global batch (``global batch // world size`` images), and only rank 0 writes files. Every
helper here is a no-op in a single process, so callers need no ``if distributed`` branches.

    torchrun --standalone --nproc_per_node=4 -m reffakd train ... --batch-size 512
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ReffAKDError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def env_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ReffAKDError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start distributed runs with torchrun"
        ) from None


def is_distributed() -> bool:
    """True when torchrun started this process as one of several (RANK, WORLD_SIZE, LOCAL_RANK set, WORLD_SIZE > 1)."""
    return all(k in os.environ for k in ENV_VARS) and env_world_size() > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def active() -> bool:
    """True when the process group is up with more than one rank: gradients and metrics are shared."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the one process that logs and writes checkpoints, metrics and summaries."""
    return rank() == 0


def shard() -> tuple[int, int] | None:
    """(rank, world size) for ``make_batches(..., shard=...)``, or None in a single process."""
    return (rank(), world_size()) if active() else None


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun says so (idempotent); return this rank's device.

    CUDA ranks use ``cuda:LOCAL_RANK`` with NCCL; CPU ranks use gloo. Call it before building the
    model, so that each rank allocates on its own GPU.
    """
    if not is_distributed():
        return device
    if not dist.is_available():
        raise ReffAKDError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; run a single process")
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise ReffAKDError(
                f"LOCAL_RANK {local_rank()} has no GPU: this node has {torch.cuda.device_count()}; "
                "use --nproc_per_node at most the GPU count"
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(cleanup)
    elif (dist.get_backend() == "nccl") != (device.type == "cuda"):
        raise ReffAKDError(f"the process group uses {dist.get_backend()}, which cannot train on {device}")
    return device


def cleanup() -> None:
    """At exit: a pause that releases the GIL, then the process group destroyed.

    A gloo worker thread that drops the last reference to a collective's tensor needs the GIL to free it; if the
    main thread holds the GIL until interpreter shutdown, that thread is ended inside C++ and the process aborts
    ("terminate called without an active exception", SIGABRT: 2 of 24 two-rank runs here, 2 of 30 with a barrier
    before the destroy). The pause lets it finish (0 of 40 with it). ``destroy_process_group`` alone does not free
    the process group: its threads outlive it.
    """
    if is_initialized():
        time.sleep(0.05)
        dist.destroy_process_group()


def check_batch_size(batch_size: int) -> None:
    """Refuse a global batch the ranks cannot split evenly (one clear line)."""
    w = world_size() if is_initialized() else (env_world_size() if is_distributed() else 1)
    if w > 1 and batch_size % w:
        raise ReffAKDError(
            f"batch size {batch_size} is not divisible by the {w} processes (WORLD_SIZE): "
            f"it is the global batch, each rank takes batch size / {w}; use a multiple of {w}"
        )


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum each value over the ranks (float64, so counts and sums of losses stay exact enough)."""
    if not active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensors(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (a no-op in one process); each may live on any device.

    NCCL reduces on this rank's GPU, gloo on the CPU: a tensor elsewhere is copied there and back.
    """
    if not active():
        return
    comm = _comm_device()
    for t in tensors:
        if t.device == comm:
            dist.all_reduce(t)
        else:
            on_comm = t.to(comm)
            dist.all_reduce(on_comm)
            t.copy_(on_comm)


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (a copy, on ``t``'s device and dtype); ``t`` itself without torchrun."""
    if not active():
        return t
    out = t.detach().clone()
    all_reduce_tensors([out])
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s object on every rank (for what only rank 0 reads from disk)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's object, in rank order (per-rank random states for the resume checkpoint)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), so all ranks hold what rank 0 saves."""
    if active():
        for b in module.buffers():
            dist.broadcast(b.data, src=0)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReffAKDError(
            f"device {name} asked for but CUDA is not available here; use device cpu or auto", params=("device",)
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ReffAKDError(
            f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N", params=("device",)
        ) from None
