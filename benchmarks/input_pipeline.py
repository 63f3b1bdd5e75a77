"""Input pipeline: whole-batch tensor augmentation against per-sample PIL transforms.

Both produce the same kind of batch (resize 28 -> 32, random crop with 4-pixel padding, horizontal
flip, normalise) from real Fashion-MNIST. Reports images/s of the loader alone and of loader plus a
LeNet-5 training step, so one sees whether LeNet-5 waits on its input.

    python benchmarks/input_pipeline.py --out benchmarks/results/input_pipeline.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from reffakd.data import BatchAugment, TensorBatches, load_fashion_mnist, split_train_val
from reffakd.data.cache import default_cache_dir
from reffakd.data.fashion_mnist import locate_fashion_mnist
from reffakd.distillers import build_distiller
from reffakd.engine import OptimConfig, build_optimizer
from reffakd.models import create_model


def throughput(batches, n_batches: int, train_step=None) -> float:
    seen = 0
    it = iter(batches)
    next(it)  # start-up (worker processes) not counted
    start = time.perf_counter()
    for x, y in itertools.islice(it, n_batches):
        if train_step is not None:
            train_step(x, y)
        seen += y.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    ds = load_fashion_mnist()
    splits = split_train_val(ds, 5000, 0)
    tensor_batches = TensorBatches(
        splits.train,
        128,
        shuffle=True,
        augment=BatchAugment(),
        normalize=(ds.mean, ds.std),
        generator=torch.Generator().manual_seed(0),
    )
    root, _ = locate_fashion_mnist(None, default_cache_dir(), download=False)
    pil = transforms.Compose(
        [
            transforms.Resize(32),
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(ds.mean, ds.std),
        ]
    )
    pil_ds = FashionMNIST(str(root), train=True, transform=pil)

    torch.manual_seed(0)
    student = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    distiller = build_distiller("ce", student, num_classes=10)
    opt = build_optimizer(student.parameters(), OptimConfig())

    def train_step(x, y):
        _, losses = distiller.forward_train(x, y, 1)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "batch_size": 128,
        "batches": args.batches,
    }
    result["tensor_loader_only_img_s"] = throughput(tensor_batches, args.batches)
    result["tensor_loader_plus_lenet5_img_s"] = throughput(tensor_batches, args.batches, train_step)
    for workers in (0, 2):
        loader = DataLoader(pil_ds, batch_size=128, shuffle=True, num_workers=workers, persistent_workers=False)
        result[f"pil_workers{workers}_loader_only_img_s"] = throughput(loader, args.batches)
        result[f"pil_workers{workers}_plus_lenet5_img_s"] = throughput(loader, args.batches, train_step)
    n_train = len(splits.train)
    for key in [k for k in result if k.endswith("_img_s")]:
        result[key.replace("_img_s", "_epoch_s")] = n_train / result[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
