"""``reffakd run``: the whole pipeline in one folder, a one-seed spec whose soft labels are built first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .data import DataSplits
from .engine import TrainOptions
from .io import read_jsonl, write_json, write_text_atomic
from .reports import plot_training_curves, summary_table
from .runner import Shared, run_one
from .softlabels import build_soft_labels
from .spec import RunSpec


def run_pipeline(
    spec: RunSpec, folders: dict[str, str], splits: DataSplits, run_dir: Path, options: TrainOptions
) -> list[dict[str, Any]]:
    """The soft labels built into ``run_dir/softlabels``, then each method's run (``runner.run_one``) into
    ``run_dir/<folders[method]>``; ``summary.md`` and ``curves.png`` compare them. ``options.resume``: continue a
    stopped run in ``run_dir``: the autoencoder and each student from its resume checkpoint (a finished one trains no
    further; one not started starts), to the results, bit for bit, of a run never stopped. ``options.speed`` (the
    spec's) applies to every student, and its cuda_graph to the autoencoder."""
    ae_options = replace(options, tensorboard=False)  # as `reffakd softlabels`: the students' metrics alone
    soft, soft_cost = build_soft_labels(splits, spec.soft_label_config(), run_dir / "softlabels", ae_options)
    shared = Shared(soft, None)
    summaries = [
        run_one(spec, item, run_dir / folders[item.method], splits, shared, options, name=folders[item.method])
        for item in spec.run_items()
    ]
    table = summary_table(summaries)
    write_text_atomic(run_dir / "summary.md", table + "\n")
    sizes = {"train_images": len(splits.train), "val_images": len(splits.val), "test_images": len(splits.test)}
    write_json(run_dir / "summary.json", {"runs": summaries, "soft_labels_cost": soft_cost, "dataset": splits.dataset,
                                          **sizes})  # fmt: skip
    plot_training_curves(
        {s["name"]: read_jsonl(run_dir / s["name"] / "metrics.jsonl") for s in summaries}, run_dir / "curves.png"
    )
    options.log("\n" + table)
    return summaries
