"""Did CE converge within each budget's epochs? Compares CE trained with one choice of epochs against CE trained
1.5x as long, seed 0, each with its own step schedule (milestones at 30/60/80 % of its epochs): if the longer
schedule's best validation top-1 is not clearly higher, the shorter epochs suffice for the CE baseline.

    python benchmarks/converge_check.py runs/converge-ce-1x runs/converge-ce   # first choice (100/50/20) vs 1.5x
    python benchmarks/converge_check.py runs/converge-ce runs/converge-ce-2x   # the study's 150/75/30 vs 1.5x
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def best(folder: Path, labels: str) -> tuple[float, int, int] | None:
    """(best validation top-1, its epoch, the run's epochs) of the CE run of one budget, or None."""
    path = folder / f"labels-{labels}" / "runs" / "ce" / "seed0" / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    top = max(rows, key=lambda r: r["val_top1"])
    return top["val_top1"], top["epoch"], rows[-1]["epoch"]


def main(short: Path, long: Path) -> None:
    print("| labels per class | CE, shorter: best val (epoch / epochs) | CE, 1.5x epochs | gain from 1.5x |")
    print("|---|---|---|---|")
    for labels in ("100", "500", "all"):
        a, b = best(short, labels), best(long, labels)
        cell = lambda r: f"{r[0]:.2f} ({r[1]} / {r[2]})" if r else "(not run)"  # noqa: E731
        gain = f"{b[0] - a[0]:+.2f}" if a and b else "-"
        print(f"| {labels} | {cell(a)} | {cell(b)} | {gain} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
