"""torchrun entry of tests/test_distributed.py: the pipeline trains LeNet-5 on the fake Fashion-MNIST.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py DATA OUT BATCH EPOCHS [--resume]
        [--method=NAME[,NAME...]]   (several: one run each, in OUT/NAME; NAME:float64: in float64, in OUT/NAME-float64)

The entry joins the process group once (WORLD_SIZE > 1: ``distributed.setup``), as the CLI's does; ``run`` called
in-process with the same arguments is the single-process reference.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from reffakd.data import load_fashion_mnist, loader, split_train_val
from reffakd.engine import OptimConfig, TrainingInterrupted, TrainOptions, distributed
from reffakd.pipeline import StudentConfig, train_student
from reffakd.reports.plots import set_plots_enabled

VAL_SIZE = 101  # 299 training images: the last batch splits unevenly over two ranks


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """The student's weights and its batches in float64 (the library trains in float32): a run under torchrun then
    differs from one process only by float64 rounding, so any larger difference is a different computation."""
    dtype, to_float = torch.get_default_dtype(), loader.BatchIterable._to_float
    torch.set_default_dtype(torch.float64)
    loader.BatchIterable._to_float = lambda self, images: to_float(self, images).double()  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        loader.BatchIterable._to_float = to_float  # type: ignore[method-assign]


def run(
    data_dir: str | Path, out: str | Path, batch_size: int, epochs: int, method: str = "ce", **options: Any
) -> dict[str, Any]:
    """``method``: a method's name, or ``NAME:float64`` (trained in float64, ``float64``)."""
    method, _, dtype = method.partition(":")
    if dtype:
        with float64():
            return run(data_dir, out, batch_size, epochs, method, **options)
    splits = split_train_val(load_fashion_mnist(data_dir, download=False), val_size=VAL_SIZE, seed=0)
    cfg = StudentConfig(method, optim=OptimConfig(epochs=epochs, batch_size=batch_size, lr=0.05), seed=3)
    return train_student(splits, cfg, out, TrainOptions(progress=False, **options))


if __name__ == "__main__":
    torch.set_num_threads(1)
    set_plots_enabled(False)  # as the suite's in-process reference runs (conftest): the same files
    data, out, batch, epochs = sys.argv[1:5]
    distributed.setup(torch.device("cpu"))  # gloo; the CPU is every rank's device
    try:
        methods = next((a.split("=", 1)[1] for a in sys.argv[5:] if a.startswith("--method=")), "ce").split(",")
        for method in methods:  # one process group start for several runs
            where = out if len(methods) == 1 else str(Path(out) / method.replace(":", "-"))
            run(data, where, int(batch), int(epochs), method, resume="--resume" in sys.argv[5:])
    except TrainingInterrupted as exc:  # what the CLI does with it
        print(f"reffakd: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
