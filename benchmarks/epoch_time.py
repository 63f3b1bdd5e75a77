"""Seconds per epoch of the one training loop (``engine.fit``): LeNet-5 with ReffAKD on synthetic 1x32x32 data.

Also the milliseconds per epoch of the files written between epochs (``writes_ms_per_epoch``: the resume
checkpoint, ``last``/``best`` with their JSON, the metrics line), outside the logged epoch seconds: over a 200-epoch
run they are part of every run's time (``--images 256 --epochs 200`` shows them alone, docs/GPU.md).

Times whatever ``reffakd`` is on PYTHONPATH, so two trees can be compared on the same machine in one session by
alternating them (the host-sync change in docs/RESULTS.md, "Cost of a training step"; its table is in
benchmarks/results/HISTORY.md):

    for i in 1 2 3; do for tree in /work/main /work/wt-scale; do
        PYTHONPATH=$tree/src python benchmarks/epoch_time.py --label $tree; done; done
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from reffakd.data import DataSplits, Split, TensorBatches
from reffakd.distillers import build_distiller
from reffakd.engine import FitBatches, OptimConfig, TrainOptions, fit, trainer
from reffakd.models import create_model
from reffakd.softlabels import SoftLabels


def time_calls(owner: Any, name: str, key: str, spent: collections.Counter[str]) -> None:
    """Wrap ``owner.name`` so that its seconds add up in ``spent[key]``."""
    inner: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start

    setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--label", default="")
    ap.add_argument("--images", type=int, default=12_800)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 1, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    names = tuple(str(k) for k in range(10))
    splits = DataSplits(Split(images, labels), Split(images[:512], labels[:512]), Split(images[:512], labels[:512]),
                        names, (0.5,), (0.25,), "synthetic")  # fmt: skip
    soft = SoftLabels(torch.softmax(torch.randn(10, 10, generator=g), 1), names)
    torch.manual_seed(0)
    student = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    distiller = build_distiller("reffakd", student, num_classes=10, soft_labels=soft)
    norm = (splits.mean, splits.std)
    train = TensorBatches(splits.train, 128, shuffle=True, normalize=norm, generator=torch.Generator().manual_seed(1))
    val = TensorBatches(splits.val, 512, normalize=norm)
    spent: collections.Counter[str] = collections.Counter()
    time_calls(trainer._Fit, "_save", "resume checkpoint", spent)
    time_calls(trainer, "save_checkpoint", "last and best", spent)
    time_calls(trainer.JsonlWriter, "write", "metrics line", spent)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        options = TrainOptions(progress=False, log=lambda line: None)
        result = fit(distiller, FitBatches(train, val), OptimConfig(epochs=args.epochs, batch_size=128), tmp, options,
                     checkpoint_meta={"model": "lenet5"})  # fmt: skip
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    per_epoch = [r["seconds"] for r in result.history]
    writes = {k: round(v / args.epochs * 1e3, 2) for k, v in spent.items()}
    print(json.dumps({"label": args.label, "epoch_seconds": per_epoch, "median": statistics.median(per_epoch),
                      "total_seconds": total, "total_cpu_seconds": cpu, "steps_per_epoch": len(train),
                      "writes_ms_per_epoch": writes}))  # fmt: skip


if __name__ == "__main__":
    main()
