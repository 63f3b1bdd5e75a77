"""The CE recipe check's table: one row per recipe run, validation first (the choice), test beside it.

    python benchmarks/ce_recipe_table.py runs/ce-recipe

Reads every ``summary.json`` under the folder (the folders of ``benchmarks/ce_recipe/*.yaml``) and prints, per run:
the labelled budget, the augmentation and the schedule it trained with, its best validation top-1 and epoch, and the
test top-1 at that epoch and at the last one (the augmentation from the checkpoint's metadata).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reffakd.io import read_json


def rows(folder: Path) -> list[list[str]]:
    out = []
    for path in sorted(folder.rglob("summary.json")):
        if "runs" not in path.parts:
            continue
        s = read_json(path, "run summary", "`reffakd compare`")
        config, labelled = s["config"], s.get("labelled")
        optim = config["optim"]
        augment = read_json(path.with_name("best.json"), "checkpoint metadata", "`reffakd compare`")["augment"]
        budget = "all" if not labelled else str(labelled.get("labels_per_class", labelled))
        aug = f"crop {augment['pad']}, flip {'on' if augment['flip'] else 'off'}"
        out.append([
            budget, aug, optim["schedule"], str(optim["epochs"]), f"{s['best_val_top1']:.2f} (epoch {s['best_epoch']})",
            f"{s['test_best']['top1']:.2f}", f"{s['test_last']['top1']:.2f}",
        ])  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    head = ["labels per class", "augmentation", "schedule", "epochs", "val top-1 (best epoch)", "test top-1 there"]
    print("| " + " | ".join([*head, "test top-1 last"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for row in rows(args.folder):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
