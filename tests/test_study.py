"""Label-budget studies: one comparison per budget from one command, and the report across them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from reffakd.cli import main
from reffakd.engine import TrainOptions
from reffakd.errors import ReffAKDError
from reffakd.spec import RunSpec


@pytest.mark.usefixtures("plots")
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
     (["most"], "budgets must be"), ([{"labels": 5, "epoch": 3}], "budgets must be"),
     ([{"labels": 5, "epochs": 0}], "budgets must be"), ([5, {"labels": 5, "epochs": 3}], "budgets must be")],
)  # fmt: skip
def test_bad_budgets_are_one_line(budgets: list, fragment: str) -> None:
    with pytest.raises(ReffAKDError, match=fragment):
        RunSpec.from_dict({"budgets": budgets}, "spec")
    with pytest.raises(ReffAKDError, match="budgets and data labels_per_class"):
        RunSpec.from_dict({"budgets": [5], "data": {"labels_per_class": 5}}, "spec")


def test_semi_supervised_methods_get_an_autoencoder_that_saw_the_withheld_images(tmp_path: Path, fake_fmnist) -> None:
    from reffakd.compare import run_compare
    from reffakd.data import load_splits
    from reffakd.softlabels import SoftLabels
    from reffakd.study import budget_spec

    spec = RunSpec.from_dict(
        {
            "methods": ["ce", "reffakd", "reffakd-semi"],
            "seeds": [0],
            "data": {"data_dir": str(fake_fmnist), "val_size": 100, "download": False, "labels_per_class": 3},
            "student": {"model": "lenet5", "epochs": 1, "batch_size": 32},
            "soft_labels": {"preset": "paper", "seed": 0, "autoencoder": {"epochs": 1, "batch_size": 64}},
        },
        "spec",
    )
    splits = load_splits(spec.data, log=lambda s: None)
    out = tmp_path / "cmp"
    run_compare(spec, out, splits, TrainOptions(progress=False, log=lambda s: None))
    plain = SoftLabels.load(out / "softlabels" / "soft_labels.safetensors")
    semi = SoftLabels.load(out / "softlabels-semi" / "soft_labels.safetensors")
    assert plain.metadata["autoencoder_images"] == 30 and semi.metadata["autoencoder_images"] == 300
    assert semi.metadata["train_images"] == plain.metadata["train_images"] == 30  # the similarity: labelled only
    for method, artifact in (("reffakd", plain), ("reffakd-semi", semi)):
        summary = json.loads((out / "runs" / method / "seed0" / "summary.json").read_text())
        assert summary["cost"]["soft_targets"]["flops"] == artifact.cost["flops"]
    # A method's name says what its autoencoder saw: the other artifact is refused in one line.
    with pytest.raises(ReffAKDError, match="method reffakd-semi needs semi-supervised soft labels"):
        plain.check_semi(True, "reffakd-semi")
    with pytest.raises(ReffAKDError, match="method reffakd cannot use semi-supervised soft labels"):
        semi.check_semi(False, "reffakd")
    # A study leaves the semi-supervised methods out where nothing is unlabelled.
    whole = {**spec.to_dict(), "data": {**asdict(spec.data), "labels_per_class": None}, "budgets": [3, "all"]}
    study = RunSpec.from_dict(whole, "spec")
    three, every = study.budgets
    assert budget_spec(study, every).methods == ["ce", "reffakd"]
    assert "reffakd-semi" in budget_spec(study, three).methods


def test_a_budget_may_bring_its_own_epochs() -> None:
    from reffakd.study import budget_spec

    spec = RunSpec.from_dict(
        {
            "budgets": [
                {"labels": 10, "epochs": 7, "tune_epochs": 2, "teacher_epochs": 9},
                {"labels": "all", "seeds": [4, 2]},
            ],
            "tune": {"trials": 2, "epochs": 1},
        },
        "spec",
    )
    ten = budget_spec(spec, spec.budgets[0])
    assert ten.student.optim.epochs == 7 and ten.tune.epochs == 2 and ten.data.labels_per_class == 10
    assert ten.seeds == spec.seeds == [0, 1, 2]
    assert ten.teacher.optim.epochs == 9 and ten.teacher.model == spec.teacher.model
    assert spec.budgets[0].folder == "labels-10" and spec.budgets[1].folder == "labels-all"
    assert spec.budgets[1].seeds == [4, 2] and spec.budgets[0].seeds is None  # read once, typed
    assert spec.to_dict()["budgets"] == [  # spec.json keeps them as given
        {"labels": 10, "epochs": 7, "tune_epochs": 2, "teacher_epochs": 9},
        {"labels": "all", "seeds": [4, 2]},
    ]
    everything = budget_spec(spec, spec.budgets[1])
    assert everything.student == spec.student and everything.data.labels_per_class is None
    assert everything.seeds == [4, 2] and [i.seed for i in everything.run_items() if i.method == "ce"] == [4, 2]
    assert everything.teacher == spec.teacher


def test_a_budget_s_teacher_epochs_need_a_teacher_the_study_trains() -> None:
    with pytest.raises(ReffAKDError, match="teacher_epochs needs a teacher trained by the study"):
        RunSpec.from_dict(
            {
                "methods": ["kd"],
                "teacher": {"checkpoint": "t.safetensors"},
                "budgets": [{"labels": 5, "teacher_epochs": 3}],
            },
            "spec",
        )
    with pytest.raises(ReffAKDError, match="budgets must be"):
        RunSpec.from_dict({"budgets": [{"labels": 5, "teacher_epochs": 0}]}, "spec")


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], [True], "0", [0.5]])
def test_a_budget_s_seeds_must_be_distinct_non_negative_integers(seeds: object) -> None:
    with pytest.raises(ReffAKDError, match=r"budgets must be .*seeds: \[distinct seeds >= 0\]"):
        RunSpec.from_dict({"budgets": [{"labels": 10, "seeds": seeds}]}, "spec")


def test_the_shipped_study_config_is_a_valid_spec(tmp_path: Path) -> None:
    from reffakd.cli import parse_command
    from reffakd.runconfig import compare_spec
    from reffakd.study import budget_spec

    config = Path(__file__).resolve().parents[1] / "configs" / "study-label-budgets.yaml"
    spec = compare_spec(parse_command(["compare", "--config", str(config), "--out", str(tmp_path / "s")]))
    assert [budget_spec(spec, b).data.labels_per_class for b in spec.budgets] == [100, 500, None]
    assert spec.seeds == [0, 1, 2, 3, 4] and spec.tune is not None
    assert [budget_spec(spec, b).seeds for b in spec.budgets] == [[0, 1, 2, 3, 4]] * 2 + [[0, 1, 2]]
    budgets = [budget_spec(spec, b) for b in spec.budgets]  # the teacher trains as long as the student's CE
    assert [b.teacher.optim.epochs for b in budgets] == [b.student.optim.epochs for b in budgets] == [150, 75, 45]
    assert "reffakd-semi" not in budget_spec(spec, spec.budgets[-1]).methods


def test_a_study_refuses_speed_options_before_its_folder(tmp_path: Path) -> None:
    import reffakd.study as study

    spec = RunSpec.from_dict({"methods": ["ce"], "budgets": [3], "speed": {"amp": "fp16"}}, "spec")
    out = tmp_path / "study"
    with pytest.raises(ReffAKDError, match="amp fp16 needs a CUDA device"):
        study.run_study(spec, out, TrainOptions(log=lambda line: None))
    assert not out.exists()


def test_every_budget_is_checked_before_anything_trains(tmp_path: Path, fake_fmnist: Path) -> None:
    """A budget the training split cannot hold is refused before the study folder exists, so the first budget does
    not train in vain and the corrected spec is accepted in the same folder."""
    import reffakd.study as study

    def spec(budgets: list) -> RunSpec:
        data = {"data_dir": str(fake_fmnist), "val_size": 100, "download": False}
        return RunSpec.from_dict(
            {"methods": ["ce"], "seeds": [0], "budgets": budgets, "data": data, "student": {"epochs": 1}}, "spec"
        )

    out = tmp_path / "study"
    with pytest.raises(ReffAKDError, match=r"budget 1000: labels_per_class 1000 is out of range: class .* has"):
        study.run_study(spec([3, 1000]), out, TrainOptions(progress=False, log=lambda line: None))
    assert not out.exists()
    study.run_study(spec([3, 20]), out, TrainOptions(progress=False, log=lambda line: None))
    assert (out / "labels-20" / "runs" / "ce" / "seed0" / "summary.json").is_file()
