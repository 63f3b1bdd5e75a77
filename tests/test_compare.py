"""`reffakd compare`: every method x seeds from one spec, resumable, one table and plot with cost."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from reffakd.cli import main
from reffakd.compare import ALL_METHODS

from conftest import tree_digest


def compare_argv(out: Path, data: Path, *extra: str) -> list[str]:
    return ["compare", "--out", str(out), "--data-dir", str(data), "--no-download", "--val-size", "100", "--no-progress",
            "--epochs", "1", "--teacher-model", "lenet5", "--teacher-epochs", "1", "--ae-epochs", "1", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "all"
    assert main(compare_argv(out, fake_fmnist, "--seeds", "0,1")) == 0
    return out


def test_every_method_and_seed_runs_once_with_shared_teacher_and_soft_labels(finished: Path) -> None:
    for method in ALL_METHODS:
        for seed in (0, 1):
            summary = json.loads((finished / "runs" / method / f"seed{seed}" / "summary.json").read_text())
            assert summary["method"] == method and summary["seed"] == seed
    assert (finished / "teacher" / "best.safetensors").is_file()
    assert (finished / "softlabels" / "soft_labels.safetensors").is_file()
    kd = json.loads((finished / "runs" / "kd" / "seed0" / "summary.json").read_text())
    dkd = json.loads((finished / "runs" / "dkd" / "seed1" / "summary.json").read_text())
    teacher = json.loads((finished / "teacher" / "summary.json").read_text())
    # The teacher's whole training run is a cost of its soft targets, plus its forward passes while distilling.
    for s in (kd, dkd):
        stages = s["cost"]["soft_targets"]["stages"]
        assert stages["teacher_training"]["flops"] == teacher["cost"]["totals"]["flops"]
        assert stages["teacher_forward"]["flops"] == teacher["forward_flops_per_image"] * 300  # 300 training images, 1 epoch
        assert s["cost"]["totals"]["soft_targets"]["flops"] == stages["teacher_training"]["flops"] + stages["teacher_forward"]["flops"]
    aesl = json.loads((finished / "softlabels" / "soft_labels_cost.json").read_text())
    for m in ("reffakd", "dkd-aesl"):
        s = json.loads((finished / "runs" / m / "seed0" / "summary.json").read_text())
        assert s["cost"]["totals"]["soft_targets"]["flops"] == aesl["flops"] > 0
    for m in ("ce", "ls", "tfkd-reg"):
        s = json.loads((finished / "runs" / m / "seed0" / "summary.json").read_text())
        assert s["cost"]["totals"]["soft_targets"] == {"flops": 0, "seconds": 0.0}
    # tfkd-self distils the CE student of its own seed, whose training is its soft targets' cost.
    tf = json.loads((finished / "runs" / "tfkd-self" / "seed1" / "summary.json").read_text())
    ce = json.loads((finished / "runs" / "ce" / "seed1" / "summary.json").read_text())
    assert tf["cost"]["soft_targets"]["stages"]["teacher_training"]["flops"] == ce["cost"]["totals"]["flops"]
    assert tf["cost"]["soft_targets"]["teacher"]["path"].endswith("runs/ce/seed1/best.safetensors")


def test_results_table_csv_and_plot(finished: Path) -> None:
    with open(finished / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["method"], int(r["seed"])) for r in rows) == sorted((m, s) for m in ALL_METHODS for s in (0, 1))
    for r in rows:
        assert float(r["total_flops"]) == pytest.approx(float(r["student_flops"]) + float(r["soft_target_flops"]))
        assert 0 <= float(r["test_top1_selected"]) <= 100
    md = (finished / "results.md").read_text()
    for method in ALL_METHODS:
        assert f"| {method} " in md
    assert "x ReffAKD's FLOPs" in md  # the teacher against the autoencoder, as ratios
    assert (finished / "accuracy_vs_cost.png").stat().st_size > 0
    assert json.loads((finished / "spec.json").read_text())["seeds"] == [0, 1]


def test_rerun_skips_finished_runs_and_extends_with_new_seeds(finished: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs_before = tree_digest(finished / "runs")
    teacher_before = tree_digest(finished / "teacher")
    assert main(compare_argv(finished, fake_fmnist, "--seeds", "0,1", "--methods", "ce,reffakd")) == 0
    out = capsys.readouterr().out
    assert "skip ce seed 0" in out and "skip reffakd seed 1" in out
    assert tree_digest(finished / "runs") == runs_before  # nothing trained again
    assert main(compare_argv(finished, fake_fmnist, "--seeds", "2", "--methods", "ce")) == 0
    assert (finished / "runs" / "ce" / "seed2" / "summary.json").is_file()
    assert tree_digest(finished / "teacher") == teacher_before
    assert json.loads((finished / "spec.json").read_text())["seeds"] == [0, 1, 2]
    with open(finished / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(ALL_METHODS) + 1


def test_interrupted_run_leaves_no_finished_folder(tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed midway leaves only its .partial folder; the next invocation redoes exactly that run."""
    import reffakd.compare as compare

    out = tmp_path / "cmp"
    real = compare.train_student
    calls = []

    def dies_on_second(*args, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "train_student", dies_on_second)
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,ls", "--seeds", "0")) == 130
    assert (out / "runs" / "ce" / "seed0" / "summary.json").is_file()
    assert not (out / "runs" / "ls" / "seed0").exists()
    monkeypatch.setattr(compare, "train_student", real)
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,ls", "--seeds", "0")) == 0
    assert (out / "runs" / "ls" / "seed0" / "summary.json").is_file()
    assert not (out / "runs" / "ls" / "seed0.partial").exists()


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--methods", "ce,bogus"], "unknown method 'bogus'"),
        (["--seeds", "0,0"], "must not repeat"),
        (["--teacher-model", "nonet"], "teacher model 'nonet' is unknown"),
        (["--epochs", "0"], "epochs 0 is out of range"),
    ],
)
def test_bad_spec_is_one_line_and_writes_nothing(extra: list[str], fragment: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert main(compare_argv(out, fake_fmnist, *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reffakd: error: ") and fragment in err[0]
    assert not out.exists()


def test_spec_file_and_a_changed_spec_refused_on_resume(tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"methods": ["ls"], "seeds": [3], "method_params": {"ls": {"epsilon": 0.2}}}))
    out = tmp_path / "cmp"
    assert main(compare_argv(out, fake_fmnist, "--spec", str(spec))) == 0
    summary = json.loads((out / "runs" / "ls" / "seed3" / "summary.json").read_text())
    assert summary["config"]["epsilon"] == 0.2
    spec.write_text(json.dumps({"methods": ["ls"], "seeds": [3], "method_params": {"ls": {"epsilon": 0.3}}}))
    capsys.readouterr()
    assert main(compare_argv(out, fake_fmnist, "--spec", str(spec))) == 1
    assert "was started with another 'method_params'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": ["ls"]}))
    assert main(compare_argv(tmp_path / "other", fake_fmnist, "--spec", str(bad))) == 1
    assert "unknown key 'method'" in capsys.readouterr().err
