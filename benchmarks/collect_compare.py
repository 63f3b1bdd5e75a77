"""Copy the small files of a comparison folder (reports, specs, per-run summaries and epoch logs) into the repo.

    python benchmarks/collect_compare.py runs/compare-fmnist benchmarks/results/compare_fmnist [--teacher DIR]

Checkpoints stay out of git; everything the tables in docs/RESULTS.md are made from is kept.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEEP = (
    "summary.json",
    "metrics.jsonl",
    "log.txt",
    "config.yaml",
    "config.json",
    "sweep.md",
    "sweep.csv",
    "soft_labels_cost.json",
    "diagnostics.txt",
    "autoencoder_metrics.jsonl",
    "soft_labels.json",
    "soft_labels.png",
    "results.md",
    "results.csv",
    "tuning.md",
    "tuning.csv",
    "spec.json",
    "accuracy_vs_cost.png",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--teacher", type=Path, help="a teacher run folder to copy into DST/teacher")
    args = ap.parse_args()
    sources = [(args.src, args.dst)] + ([(args.teacher, args.dst / "teacher")] if args.teacher else [])
    for src, dst in sources:
        for path in sorted(src.rglob("*")):
            if path.is_file() and path.name in KEEP and ".partial" not in str(path):
                target = dst / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                print(target)


if __name__ == "__main__":
    main()
