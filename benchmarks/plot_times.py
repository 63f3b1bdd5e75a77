"""What each figure costs: the seconds of every PNG a run, softlabels or compare draws (``--no-plots`` skips them).

Each figure on data of a real run's shapes (10 classes, 15 epochs, 8 reconstructions; the comparison figures from the
label-budget study's all-labels folder, 13 methods), drawn once cold
(the process's first figure loads matplotlib and its fonts) and then ``--repeats`` times; prints the cold time and
the median and range of the warm ones.

    python benchmarks/plot_times.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from reffakd.distillers import method_names
from reffakd.reports.compare_report import (
    aggregate,
    collect_runs,
    paired_to_baseline,
    plot_accuracy_vs_cost,
    plot_paired,
)
from reffakd.reports.plots import plot_reconstructions, plot_soft_labels, plot_training_curves
from reffakd.softlabels import SoftLabels

STUDY = Path(__file__).parent / "results" / "study-label-budgets" / "labels-all"  # a real comparison, 13 methods


def figures() -> dict[str, Callable[[Path], None]]:
    g = torch.Generator().manual_seed(0)
    names = tuple(f"class {i}" for i in range(10))
    soft = SoftLabels(torch.softmax(torch.randn(10, 10, generator=g), 1), names, metadata={"temperature": 1.0})
    images = torch.rand(8, 1, 32, 32, generator=g)
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_top1": 80 + e / 2} for e in range(1, 16)]
    agg = aggregate(collect_runs(STUDY), method_names())
    paired = paired_to_baseline(agg, "ce")
    return {
        "curves.png (one run)": lambda p: plot_training_curves({"ce": history}, p),
        "soft_labels.png": lambda p: plot_soft_labels(soft, p),
        "reconstructions.png": lambda p: plot_reconstructions(images, images, p),
        "accuracy_vs_cost.png": lambda p: plot_accuracy_vs_cost(agg, p),
        "paired_vs_baseline.png": lambda p: plot_paired(paired, p),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in figures().items():
            path = Path(tmp) / "figure.png"
            start = time.perf_counter()
            draw(path)
            cold = time.perf_counter() - start
            warm = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                draw(path)
                warm.append(time.perf_counter() - start)
            print(f"{name:24s} first {cold:5.2f} s   then median {statistics.median(warm):5.2f} s "
                  f"({min(warm):.2f} to {max(warm):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
