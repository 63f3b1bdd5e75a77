"""The whole training step replayed as one CUDA graph (``cuda_graph``, ``--cuda-graph``).

Small models on a GPU wait on kernel launches, not on arithmetic: on an H200 a LeNet-5 step at batch 128 takes
about 2 ms launched kernel by kernel and 0.45 ms replayed as one graph (docs/GPU.md). ``StepGraph`` records the
loop's own step function (the task's forward and losses, backward, the SGD update) and replays it for each batch,
so a replay runs the kernels an eager step would, reading the batch from fixed input buffers.

* The first ``WARMUP_STEPS`` steps of a session run eagerly on a side stream (cuDNN's algorithm choices, the
  optimiser's momentum buffers and the gradients' layout exist before anything is recorded).
* A new graph is recorded at the first batch of an epoch whose learning rate differs from the recorded one
  (``new_epoch``): the recorded SGD kernels hold it as a number. (Recording waits for the device and runs Python's
  garbage collector, so a step schedule records a few graphs in a run, a cosine one one per epoch.)
* A batch of another shape than the recorded one (the last, smaller batch of an epoch) runs eagerly, on the same
  weights and optimiser state.

A replay skips whatever the step does on the host, so only steps that are pure device work can be recorded; a task
says why its step is not (``Task.cuda_graph_blocker``) and the loop refuses it in one line.

The loop records the in-memory loader's batches the same way (``BatchGraph`` around ``TensorBatches.gather``): the
host draws each batch's augmentation and slices the epoch's permutation, and one replay gathers, augments and scales
the batch on the device, where its kernels launched one by one from Python took 0.4 ms a batch on an H200. The loader
knows nothing of graphs: it only keeps that device work in one pure function.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch

from ..data.loader import TensorBatches
from ..data.transfer import copy_into, to_device
from ..errors import ReffAKDError

WARMUP_STEPS = 3


def check_device(device: torch.device) -> None:
    if device.type != "cuda":
        raise ReffAKDError(
            f"cuda_graph needs a CUDA device, not {device}; train without cuda_graph", params=("cuda_graph",)
        )


def refuse_unrecordable(task: Any, method: str | None = None, instead: str | None = None) -> None:
    """One line when ``task``'s step does host work a replay would skip (``Task.cuda_graph_blocker``), naming the
    method when the caller knows it, and what to do ``instead`` (default: train it without cuda_graph)."""
    blocker = task.cuda_graph_blocker()
    if blocker is None:
        return
    if method is None:
        raise ReffAKDError(f"cuda_graph cannot record this training step: {blocker}", params=("cuda_graph",))
    raise ReffAKDError(
        f"cuda_graph cannot record the training step of {method}: {blocker}; "
        f"{instead or f'train {method} without cuda_graph'}",
        params=("cuda_graph",),
    )


def side_stream_call(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a side stream, ordered after and before the current stream's work (the warm-up recipe of
    ``torch.cuda.graphs``)."""
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        out = fn()
    current.wait_stream(side)
    return out


def record(fn: Callable[[], Any]) -> tuple[Any, Callable[[], None]]:
    """Record ``fn()`` as a CUDA graph without running it: its outputs (rewritten by every replay) and the replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return out, graph.replay


def _signature(tensors: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    return tuple((t.shape, t.dtype) for t in tensors)


class Recorded:
    """Runs ``fn(*tensors, **kwargs)`` eagerly for its first ``warmup`` calls, then as a recorded graph: recorded at
    the next call, replayed for every later call whose tensors have the recorded shapes; a call of other shapes runs
    eagerly. The outputs of a replay are the recorded ones, rewritten by the next replay.

    ``device``: where ``fn`` works; host tensors among the inputs (a batch's random draws) reach it through pinned,
    asynchronous copies into fixed device buffers. ``kwargs`` are fixed when a graph is recorded.
    ``captures``, ``replays`` and ``eager`` count what happened.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, warmup: int) -> None:
        self.fn, self.device, self.warmup = fn, device, warmup
        self.warmed = 0
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.output: Any = None
        self.replay: Callable[[], None] | None = None
        self.captures = self.replays = self.eager = 0

    def reset(self) -> None:
        """Forget the graph; the next call records a new one."""
        self.inputs, self.output, self.replay = (), None, None

    def _host(self, t: torch.Tensor) -> bool:
        return t.device.type == "cpu" and self.device.type == "cuda"

    def _eager(self, tensors: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> Any:
        self.eager += 1
        return self.fn(*(to_device(t, self.device) if self._host(t) else t for t in tensors), **kwargs)

    def _fill(self, tensors: tuple[torch.Tensor, ...]) -> None:
        for buffer, t in zip(self.inputs, tensors):
            copy_into(buffer, t)

    def __call__(self, tensors: tuple[torch.Tensor, ...], **kwargs: Any) -> Any:
        if self.warmed < self.warmup:
            self.warmed += 1
            return side_stream_call(lambda: self._eager(tensors, kwargs))
        if self.replay is None:
            # The fixed buffers every replay reads, where fn works (a device tensor stays on its own device).
            self.inputs = tuple(torch.empty_like(t, device=self.device if self._host(t) else t.device) for t in tensors)
            self._fill(tensors)
            self.output, self.replay = record(lambda: self.fn(*self.inputs, **kwargs))
            self.captures += 1
        elif _signature(tensors) != _signature(self.inputs):
            return self._eager(tensors, kwargs)
        else:
            self._fill(tensors)
        self.replay()
        self.replays += 1
        return self.output


class StepGraph(Recorded):
    """The training step, recorded after ``WARMUP_STEPS`` eager steps and again for each new learning rate (module
    docstring).

    ``kwargs`` (the training progress) are fixed when the graph is recorded: the task has declared that its step does
    not depend on them.
    """

    def __init__(self, step: Callable[..., Any], device: torch.device) -> None:
        super().__init__(step, device, WARMUP_STEPS)
        self.lr: float | None = None

    def new_epoch(self, lr: float) -> None:
        """An epoch at learning rate ``lr`` starts: a graph recorded at another rate is forgotten."""
        if lr != self.lr:
            self.reset()
            self.lr = lr


class BatchGraph(Recorded):
    """The in-memory loader's device work (``batches.gather``) recorded after one eager batch; inside ``with``, the
    loader's ``gather_batch`` is this graph, and after it the loader is as it was.

    Only one process's batches without pairs go through ``gather`` (a shard's or a pair's batch is assembled apart);
    the loop records no step for those anyway (torchrun, CS-KD), so they are refused here in one line.
    """

    def __init__(self, batches: TensorBatches) -> None:
        if batches.shard is not None or batches.pairs is not None:
            raise ReffAKDError("cuda_graph batches are one process's, without pairs", params=("cuda_graph",))
        super().__init__(batches.gather, batches.device, warmup=1)
        self.batches = batches

    def __enter__(self) -> BatchGraph:
        self.batches.gather_batch = self  # type: ignore[method-assign]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        del self.batches.gather_batch  # the loader's own method again


def batch_graph(batches: object) -> BatchGraph | None:
    """A ``BatchGraph`` of in-memory batches; None for batches read on the host (streamed files, a user's iterable)."""
    return BatchGraph(batches) if isinstance(batches, TensorBatches) else None
