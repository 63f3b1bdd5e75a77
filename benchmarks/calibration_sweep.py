"""Choose the default soft-label calibration by validation accuracy (real Fashion-MNIST, LeNet-5).

One autoencoder and one similarity matrix; soft labels for several target own-class probabilities
(one global tau: arms p*, or every class's own probability set to the target: arms e*) and for the
paper preset (tau = 1); a student per (calibration, loss temperature T) at alpha 0.5, plus a CE
reference. Selection uses validation top-1 only; test numbers are recorded, not used.

    python benchmarks/calibration_sweep.py --out benchmarks/results/calibration --epochs 15
    python benchmarks/calibration_sweep.py --out benchmarks/results/calibration_equalized --epochs 15 \
        --targets "" --equalized-targets 0.5,0.7,0.9 --no-baselines
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from reffakd.data import DataConfig, load_splits
from reffakd.engine import OptimConfig, TrainOptions
from reffakd.pipeline import StudentConfig, train_student
from reffakd.softlabels import Calibration, SoftLabelConfig, build_soft_labels, soft_labels_from_similarity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--ae-epochs", type=int, default=10)
    ap.add_argument("--targets", default="0.3,0.5,0.7,0.9", help="global-tau targets (arms p*)")
    ap.add_argument("--equalized-targets", default="", help="per-class targets (arms e*)")
    ap.add_argument(
        "--baselines", action=argparse.BooleanOptionalAction, default=True, help="also CE and the paper preset"
    )
    ap.add_argument("--temperatures", default="1,4")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    splits = load_splits(DataConfig())
    work = Path(tempfile.mkdtemp(prefix="reffakd-cal-"))
    base = SoftLabelConfig(
        Calibration.preset("paper", "fashion-mnist"), "paper", OptimConfig(epochs=args.ae_epochs), seed=args.seed
    )
    quiet = TrainOptions(device, progress=False)
    soft, cost = build_soft_labels(splits, base, work / "softlabels", quiet)
    shutil.copy(work / "softlabels" / "autoencoder_metrics.jsonl", args.out / "autoencoder_metrics.jsonl")
    (args.out / "soft_labels_cost.json").write_text(json.dumps(cost, indent=2))
    soft.save(args.out / "soft_labels_paper.safetensors")  # holds the similarity matrix too
    similarity = soft.similarity
    boost = base.calibration.diagonal_boost
    arms: dict[str, Calibration] = {"paper": Calibration(boost, temperature=1.0)} if args.baselines else {}
    for p in (float(x) for x in args.targets.split(",") if x):
        arms[f"p{p:g}"] = Calibration(boost, target_own_probability=p)
    for p in (float(x) for x in args.equalized_targets.split(",") if x):
        arms[f"e{p:g}"] = Calibration(boost, target_own_probability=p, equalize_own=True)
    results = []
    optim = OptimConfig(epochs=args.epochs)
    if args.baselines:
        ce = train_student(
            splits,
            StudentConfig("ce", optim=optim, seed=args.seed),
            work / "ce",
            quiet,
            summary={"name": "ce"},
        )
        results.append({"arm": "ce", "T": None, **_row(ce)})
        shutil.copy(work / "ce" / "metrics.jsonl", args.out / "ce.metrics.jsonl")
    for name, cal in arms.items():
        cfg = SoftLabelConfig(cal, name, base.autoencoder, seed=args.seed)
        arm_soft = soft_labels_from_similarity(similarity, splits, cfg)
        for t in (float(x) for x in args.temperatures.split(",")):
            run = f"{name}-T{t:g}"
            s = train_student(
                splits,
                StudentConfig("reffakd", optim=optim, seed=args.seed, params={"alpha": args.alpha, "temperature": t}),
                work / run,
                quiet,
                soft_labels=arm_soft,
                summary={"name": run},
            )
            diag = arm_soft.metadata["diagnostics"]
            row = {
                "arm": name,
                "T": t,
                "tau": arm_soft.metadata["temperature"],
                "mean_own_probability": diag["mean_own_probability"],
                "rows_with_diagonal_argmax": diag["rows_with_diagonal_argmax"],
                **_row(s),
            }
            results.append(row)
            shutil.copy(work / run / "metrics.jsonl", args.out / f"{run}.metrics.jsonl")
            print(json.dumps(row), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    best = max((r for r in results if r["arm"] != "ce"), key=lambda r: r["best_val_top1"])
    print("best by validation:", json.dumps(best))
    shutil.rmtree(work)


def _row(s: dict) -> dict:
    return {
        "best_epoch": s["best_epoch"],
        "best_val_top1": s["best_val_top1"],
        "test_top1_selected": s["test_best"]["top1"],
        "test_top1_last": s["test_last"]["top1"],
        "seconds": s["cost"]["student"]["seconds"],
    }


if __name__ == "__main__":
    main()
