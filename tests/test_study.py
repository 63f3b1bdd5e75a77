"""Label-budget studies: one comparison per budget from one command, and the report across them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reffakd.cli import main
from reffakd.errors import ReffAKDError
from reffakd.spec import RunSpec


def test_a_study_runs_each_budget_and_reports_across_them(tmp_path: Path, fake_fmnist: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "methods": ["ce", "ls"],
                "seeds": [0, 1],
                "budgets": [3, "all"],
                "data": {"data_dir": str(fake_fmnist), "val_size": 100, "download": False},
                "student": {"model": "lenet5", "epochs": 1, "batch_size": 32},
            }
        )
    )
    out = tmp_path / "study"
    assert main(["compare", "--config", str(config), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    for budget, train_images in (("3", 30), ("all", 300)):
        summary = json.loads((out / f"labels-{budget}" / "runs" / "ls" / "seed1" / "summary.json").read_text())
        assert summary["train_images"] == train_images
        assert (summary["labelled"] or {}).get("labels_per_class") == (3 if budget == "3" else None)
    md = (out / "study.md").read_text()
    assert "## 3 labelled images per class" in md and "## all labelled images per class (30 per class)" in md
    assert md.count("| ls ") == 2 and "Δ to ce" in md
    assert (out / "study.png").stat().st_size > 0
    # Again: everything is finished, nothing trains; the report is the same.
    assert main(["compare", "--config", str(config), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert (out / "study.md").read_text() == md


@pytest.mark.parametrize(
    "budgets,fragment",
    [([], "budgets must be a non-empty list"), ([0], "budgets must be"), ([5, 5], "budgets must be"),
     (["most"], "budgets must be")],
)  # fmt: skip
def test_bad_budgets_are_one_line(budgets: list, fragment: str) -> None:
    with pytest.raises(ReffAKDError, match=fragment):
        RunSpec.from_dict({"budgets": budgets}, "spec")
    with pytest.raises(ReffAKDError, match="budgets and data labels_per_class"):
        RunSpec.from_dict({"budgets": [5], "data": {"labels_per_class": 5}}, "spec")
