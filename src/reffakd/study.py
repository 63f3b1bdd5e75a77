"""Label-budget studies: the same comparison at several labelled budgets (``OUT/labels-<budget>/``, each resumable), and
one report across them. Soft targets are said to pay off where the student can overfit, and few labels is the commonest
such case; the validation and test splits are the same at every budget.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .compare import check_resumable, check_speed, locked_folder, run_compare
from .data import DataSplits, load_splits
from .distillers import baseline_method, get_method, method_names
from .engine import TrainOptions
from .errors import ReffAKDError
from .reports.study_report import write_study_report
from .spec import Budget, RunSpec, with_epochs


def budget_spec(spec: RunSpec, budget: Budget) -> RunSpec:
    """The comparison of one budget: the study's spec with that many labels per class ("all": every label, and
    without the semi-supervised methods, which would train exactly as their supervised twins)."""
    d = spec.to_dict()
    d["budgets"] = None
    if budget.epochs is not None:
        d["student"] = with_epochs(d["student"], budget.epochs)
    if budget.teacher_epochs is not None:
        d["teacher"] = with_epochs(d["teacher"], budget.teacher_epochs)
    if budget.seeds is not None:
        d["seeds"] = budget.seeds
    if budget.tune_epochs is not None and d.get("tune"):
        d["tune"] = {**d["tune"], "epochs": budget.tune_epochs}
    labels = budget.labels
    if labels == "all":  # nothing is unlabelled: a semi-supervised method would repeat its supervised twin
        d["methods"] = [m for m in d["methods"] if not get_method(m).source.semi] or d["methods"]
    d["data"] = {**d["data"], "labels_per_class": None if labels == "all" else labels, "label_fraction": None}
    return RunSpec.from_dict(d, f"budget {labels}")


def run_study(
    spec: RunSpec,
    out: str | Path,
    options: TrainOptions | None = None,
    *,
    jobs: int = 1,
    config_yaml: str | None = None,
) -> str:
    """Each budget's comparison in turn (each resumable on its own), then the study's report; returns it. ``options``:
    how the runs train, as for ``run_compare``."""
    assert spec.budgets is not None
    out, options = Path(out), options or TrainOptions()
    check_resumable(out, spec)
    # Before the study folder exists, so that a spec that cannot run is refused before any budget trains and can be
    # corrected; each budget's comparison checks its own split again.
    spec.speed.validate(options.device)  # before any data is loaded
    check_speed(spec, check_budgets_fit(spec), options.device)
    with locked_folder(out, spec, "study"):
        for budget in spec.budgets:
            sub = budget_spec(spec, budget)
            options.log(f"study: budget {budget.labels} labels per class -> {out / budget.folder}")
            splits = load_splits(sub.data, options.log)
            run_compare(sub, out / budget.folder, splits, options, jobs=jobs, config_yaml=config_yaml)
        md = study_report(spec, out)
    options.log(md)
    return md


def check_budgets_fit(spec: RunSpec) -> DataSplits:
    """Every budget's labelled subset drawn from the training split, or one line naming the budget and the class
    too small for it; returns the first budget's splits. One load of the data, whatever the number of budgets."""
    assert spec.budgets is not None
    first = budget_spec(spec, spec.budgets[0]).data
    whole = load_splits(replace(first, labels_per_class=None, label_fraction=None), lambda line: None)
    sizes = torch.bincount(whole.train.labels, minlength=whole.num_classes).tolist()
    for budget in spec.budgets:
        wanted = budget_spec(spec, budget).data.label_budget()
        if wanted is not None:
            try:
                wanted.counts(sizes, whole.class_names)
            except ReffAKDError as exc:
                raise ReffAKDError(f"budget {budget.labels}: {exc}") from None
    return load_splits(first, lambda line: None) if first.label_budget() is not None else whole


def study_report(spec: RunSpec, out: Path, dst: Path | None = None) -> str:
    """``study.md`` and ``study.png`` into ``dst`` (default ``out``) from the budget folders of ``out`` that exist:
    the finished study's report, or one of a study still running."""
    assert spec.budgets is not None
    existing = [(b.labels, out / b.folder) for b in spec.budgets if (out / b.folder).is_dir()]
    return write_study_report(dst or out, existing, method_names(), baseline_method())
