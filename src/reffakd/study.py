"""Label-budget studies: the same comparison at several labelled budgets, and one report across them.

Soft targets are said to pay off where the student can overfit; few labels is the commonest such case. A spec
with ``budgets: [100, 500, "all"]`` runs its whole comparison (tuning included, when it has a ``tune`` section)
once per budget, each an ordinary, resumable comparison folder ``OUT/labels-<budget>/`` whose data keeps that many
labels per class (``data.budget``), and writes ``study.md`` and ``study.png`` across them
(``reports.study_report``). The validation and test splits are the same at every budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .compare import SPEC_FILE, check_resumable, check_speed, run_compare
from .data import load_splits
from .distillers import baseline_method, get_method, method_names
from .io import write_json
from .reports.study_report import write_study_report
from .rundir import LOCK, locked
from .spec import RunSpec, budget_item


def budget_labels(budget: Any) -> Any:
    """A budget entry's labels per class (a count, or "all")."""
    item = budget_item(budget)
    assert item is not None  # the spec was validated
    return item["labels"]


def budget_folder(budget: Any) -> str:
    return f"labels-{budget_labels(budget)}"


def budget_spec(spec: RunSpec, budget: Any) -> RunSpec:
    """The comparison of one budget: the study's spec with that many labels per class ("all": every label, and
    without the semi-supervised methods, which would train exactly as their supervised twins)."""
    item = budget_item(budget)
    assert item is not None
    budget = item["labels"]
    d = spec.to_dict()
    d["budgets"] = None
    if item["epochs"] is not None:
        d["student"] = {**d["student"], "epochs": item["epochs"], "milestones": None}
    if item["teacher_epochs"] is not None:
        d["teacher"] = {**d["teacher"], "epochs": item["teacher_epochs"], "milestones": None}
    if item["seeds"] is not None:
        d["seeds"] = item["seeds"]
    if item["tune_epochs"] is not None and d.get("tune"):
        d["tune"] = {**d["tune"], "epochs": item["tune_epochs"]}
    if budget == "all":  # nothing is unlabelled: a semi-supervised method would repeat its supervised twin
        d["methods"] = [m for m in d["methods"] if not get_method(m).source.semi] or d["methods"]
    d["data"] = {**d["data"], "labels_per_class": None if budget == "all" else budget, "label_fraction": None}
    return RunSpec.from_dict(d, f"budget {budget}")


def run_study(
    spec: RunSpec,
    out: str | Path,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    config_yaml: str | None = None,
) -> str:
    """Each budget's comparison in turn (each resumable on its own), then the study's report; returns it."""
    assert spec.budgets is not None
    out = Path(out)
    check_resumable(out, spec)
    # Before the study folder exists; each budget's comparison checks its own split again. Only cuda_graph's check
    # (which methods can record their step) needs a split.
    spec.speed_options().validate(device)
    if spec.speed_options().cuda_graph:
        check_speed(spec, load_splits(budget_spec(spec, spec.budgets[0]).data_config(), lambda line: None), device)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"study folder {out}"):
        check_resumable(out, spec)
        write_json(out / SPEC_FILE, spec.to_dict())
        for budget in spec.budgets:
            sub = budget_spec(spec, budget)
            log(f"study: budget {budget_labels(budget)} labels per class -> {out / budget_folder(budget)}")
            splits = load_splits(sub.data_config(), log)
            run_compare(sub, out / budget_folder(budget), splits, device=device, progress=progress, log=log,
                        jobs=jobs, config_yaml=config_yaml)  # fmt: skip
        md = study_report(spec, out)
    log(md)
    return md


def study_report(spec: RunSpec, out: Path, dst: Path | None = None) -> str:
    """``study.md`` and ``study.png`` into ``dst`` (default ``out``) from the budget folders of ``out`` that exist:
    the finished study's report, or one of a study still running."""
    assert spec.budgets is not None
    folders = [(budget_labels(b), out / budget_folder(b)) for b in spec.budgets]
    existing = [(b, f) for b, f in folders if f.is_dir()]
    return write_study_report(dst or out, existing, method_names(), baseline_method())
