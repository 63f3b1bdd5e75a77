"""CE baseline vs ReffAKD (paper preset) vs ReffAKD (calibrated default) on real Fashion-MNIST.

Same budget for every arm, several seeds. Per seed: one autoencoder (seeded) whose similarity matrix
gives both soft-label presets, then one LeNet-5 student per arm. Test top-1 is reported at the
validation-selected epoch and at the last epoch; the autoencoder's cost is recorded beside them.

    python benchmarks/fashion_mnist_seeds.py --out benchmarks/results/fmnist_seeds --epochs 30 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
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
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--ae-epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--paper-T", type=float, default=4.0, help="loss temperature of the paper-preset arm")
    ap.add_argument("--calibrated-T", type=float, default=4.0, help="loss temperature of the calibrated arm")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    splits = load_splits(DataConfig())
    work = Path(tempfile.mkdtemp(prefix="reffakd-seeds-"))
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        paper_cfg = SoftLabelConfig(
            Calibration.preset("paper", splits.dataset), "paper", OptimConfig(epochs=args.ae_epochs), seed=seed
        )
        paper_soft, cost = build_soft_labels(
            splits, paper_cfg, work / f"soft{seed}", TrainOptions(device, progress=False)
        )
        cal_cfg = SoftLabelConfig(
            Calibration.preset("calibrated", splits.dataset), "calibrated", paper_cfg.autoencoder, seed=seed
        )
        cal_soft = soft_labels_from_similarity(paper_soft.similarity, splits, cal_cfg)
        cal_soft.cost = cost  # the same autoencoder and similarity, calibrated another way
        (args.out / f"seed{seed}.soft_labels_cost.json").write_text(json.dumps(cost, indent=2))
        shutil.copy(
            work / f"soft{seed}" / "autoencoder_metrics.jsonl", args.out / f"seed{seed}.autoencoder_metrics.jsonl"
        )
        for name, soft in (("paper", paper_soft), ("calibrated", cal_soft)):
            (args.out / f"seed{seed}.diagnostics_{name}.json").write_text(
                json.dumps({"temperature": soft.metadata["temperature"], **soft.metadata["diagnostics"]}, indent=2)
            )
        optim = OptimConfig(epochs=args.epochs)
        arms = {
            "ce": (StudentConfig("ce", optim=optim, seed=seed), None),
            "reffakd-paper": (
                StudentConfig(
                    "reffakd", optim=optim, seed=seed, params={"alpha": args.alpha, "temperature": args.paper_T}
                ),
                paper_soft,
            ),
            "reffakd-calibrated": (
                StudentConfig(
                    "reffakd", optim=optim, seed=seed, params={"alpha": args.alpha, "temperature": args.calibrated_T}
                ),
                cal_soft,
            ),
        }
        for arm, (cfg, soft) in arms.items():
            run = f"{arm}-seed{seed}"
            s = train_student(
                splits,
                cfg,
                work / run,
                TrainOptions(device, progress=False),
                soft_labels=soft,  # carries the cost of making it
                summary={"name": run},
            )
            shutil.copy(work / run / "metrics.jsonl", args.out / f"{run}.metrics.jsonl")
            row = {
                "arm": arm,
                "seed": seed,
                "best_epoch": s["best_epoch"],
                "best_val_top1": s["best_val_top1"],
                "test_top1_selected": s["test_best"]["top1"],
                "test_top1_last": s["test_last"]["top1"],
                "student_seconds": s["cost"]["student"]["seconds"],
                "student_flops": s["cost"]["student"]["flops"],
                "soft_target_seconds": cost["seconds"] if soft else 0.0,
                "soft_target_flops": cost["flops"] if soft else 0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for arm in ("ce", "reffakd-paper", "reffakd-calibrated"):
        sel = [r for r in rows if r["arm"] == arm]
        summary[arm] = {
            k: {
                "mean": statistics.mean(r[k] for r in sel),
                "std": statistics.stdev(r[k] for r in sel) if len(sel) > 1 else 0.0,
            }
            for k in ("best_val_top1", "test_top1_selected", "test_top1_last", "student_seconds", "soft_target_seconds")
        }
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": rows,
        "summary": summary,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
