"""Time of one ReffAKD training step divided by one CE training step (LeNet-5, batch 128, same run).

Steps alternate CE / ReffAKD so that both see the same machine load; the ratio of medians is reported.

    python benchmarks/step_ratio.py --out benchmarks/results/step_ratio.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from reffakd.distillers import build_distiller
from reffakd.engine import OptimConfig, build_optimizer
from reffakd.models import create_model
from reffakd.softlabels import SoftLabels


def make(method: str, soft: SoftLabels):
    torch.manual_seed(0)
    student = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    params = {"alpha": 0.5, "temperature": 4.0} if method == "reffakd" else None
    distiller = build_distiller(method, student, num_classes=10, soft_labels=soft, params=params)
    return distiller, build_optimizer(student.parameters(), OptimConfig())


def step(distiller, optimizer, x, y) -> None:
    _, losses = distiller.forward_train(x, y, 1)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    soft = SoftLabels(torch.softmax(torch.randn(10, 10), 1), tuple(str(i) for i in range(10)))
    runs = {m: make(m, soft) for m in ("ce", "reffakd")}
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch_size, 1, 32, 32, generator=g), torch.randint(0, 10, (args.batch_size,), generator=g))
        for _ in range(8)
    ]
    times: dict[str, list[float]] = {m: [] for m in runs}
    for i in range(args.steps + 20):
        x, y = batches[i % len(batches)]
        for method, (distiller, opt) in runs.items():
            start = time.perf_counter()
            step(distiller, opt, x, y)
            if i >= 20:  # warm-up
                times[method].append(time.perf_counter() - start)
    med = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "ce_median_ms": 1000 * med["ce"],
        "reffakd_median_ms": 1000 * med["reffakd"],
        "ratio_of_medians": med["reffakd"] / med["ce"],
        "ratio_of_means": statistics.mean(times["reffakd"]) / statistics.mean(times["ce"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
