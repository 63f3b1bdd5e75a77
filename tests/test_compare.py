"""`reffakd compare`: every method x seeds from one spec, resumable, one table and plot with cost."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import drawing, tree_digest
from reffakd.cli import main, parse_command
from reffakd.distillers import default_methods, method_names
from reffakd.engine import TrainOptions
from reffakd.engine.speed import SpeedOptions
from reffakd.errors import ReffAKDError
from reffakd.recipes import load_recipe, recipe_names
from reffakd.runconfig import compare_spec
from reffakd.spec import RunSpec, TeacherCheckpoint


def compare_argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--out",
        str(out),
        "--data-dir",
        str(data),
        "--no-download",
        "--val-size",
        "100",
        "--no-progress",
        "--epochs",
        "1",
        "--teacher-model",
        "lenet5",
        "--teacher-epochs",
        "1",
        "--ae-epochs",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "all"
    with drawing():
        assert main(compare_argv(out, fake_fmnist, "--seeds", "0,1")) == 0
    return out


def test_every_method_and_seed_runs_once_with_shared_teacher_and_soft_labels(finished: Path) -> None:
    for method in default_methods():
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
        assert (
            stages["teacher_forward"]["flops"] == teacher["forward_flops_per_image"] * 300
        )  # 300 training images, 1 epoch
        assert (
            s["cost"]["totals"]["soft_targets"]["flops"]
            == stages["teacher_training"]["flops"] + stages["teacher_forward"]["flops"]
        )
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
    expected = sorted((m, s) for m in default_methods() for s in (0, 1))
    assert sorted((r["method"], int(r["seed"])) for r in rows) == expected
    assert not any(m.endswith("-semi") for m, _ in expected)  # the -semi methods run only when named
    for r in rows:
        assert float(r["total_flops"]) == pytest.approx(float(r["student_flops"]) + float(r["soft_target_flops"]))
        assert 0 <= float(r["test_top1_selected"]) <= 100
    md = (finished / "results.md").read_text()
    for method in default_methods():
        assert f"| {method} " in md
    assert "x ReffAKD's FLOPs" in md  # the teacher against the autoencoder, as ratios
    assert (finished / "accuracy_vs_cost.png").stat().st_size > 0
    # Every other method paired with ce over the two seeds, with an interval, and the plot of those intervals.
    paired = md.split("Paired difference to ce")[1]
    for method in default_methods()[1:]:
        assert re.search(rf"\| {re.escape(method)} +\| 2 +\| [+-]\d+\.\d\d \[[+-]\d", paired), method
    assert (finished / "paired_vs_baseline.png").stat().st_size > 0
    assert json.loads((finished / "spec.json").read_text())["seeds"] == [0, 1]


def test_rerun_skips_finished_runs_and_extends_with_new_seeds(
    finished: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        assert len(list(csv.DictReader(f))) == 2 * len(default_methods()) + 1


def test_interrupted_run_leaves_no_finished_folder(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed midway leaves only its .partial folder; the next invocation redoes exactly that run."""
    import reffakd.runner as runner

    out = tmp_path / "cmp"
    real = runner.train_student
    calls = []

    def dies_on_second(*args, **kwargs):
        calls.append(kwargs["summary"]["name"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_student", dies_on_second)
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,ls", "--seeds", "0")) == 130
    assert (out / "runs" / "ce" / "seed0" / "summary.json").is_file()
    assert not (out / "runs" / "ls" / "seed0").exists()
    monkeypatch.setattr(runner, "train_student", real)
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
        (["--compile-mode", "reduce-overhead"], "--compile-mode reduce-overhead applies only with --compile"),
        (["--cuda-graph", "--device", "cpu"], "--cuda-graph needs a CUDA device, not cpu"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA device, not cpu"),
    ],
)
def test_bad_spec_is_one_line_and_writes_nothing(
    extra: list[str], fragment: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main(compare_argv(out, fake_fmnist, *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reffakd: error: ") and fragment in err[0]
    assert not out.exists()


def test_resuming_a_finished_comparison_makes_no_shared_input_and_a_pending_run_makes_only_its_own(
    finished: Path, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The teacher and the soft labels are made only for methods with a run still to train: a finished comparison
    whose artifacts were deleted (as a committed results folder keeps none) resumes without training anything."""
    out = tmp_path / "all"
    shutil.copytree(finished, out)
    for folder in ("teacher", "softlabels"):
        shutil.rmtree(out / folder)
    assert main(compare_argv(out, fake_fmnist, "--seeds", "0,1")) == 0
    assert not (out / "teacher").exists() and not (out / "softlabels").exists()
    assert "autoencoder epoch" not in capsys.readouterr().out
    shutil.rmtree(out / "runs" / "kd" / "seed1")  # a teacher run still to train: the teacher, not the soft labels
    assert main(compare_argv(out, fake_fmnist, "--seeds", "0,1")) == 0
    assert (out / "teacher" / "best.safetensors").is_file() and not (out / "softlabels").exists()
    assert (out / "runs" / "kd" / "seed1" / "summary.json").is_file()


def test_spec_file_and_a_changed_spec_refused_on_resume(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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


# --------------------------------------------------------------------------- presets


PAPER_SETTINGS = {  # docs/METHOD.md's table: dataset, student, teacher for vanilla KD
    "paper-fashion-mnist": ("fashion-mnist", "lenet5", "resnet18"),
    "paper-cifar100": ("cifar100", "resnet18", "resnet50"),
    "paper-tinyimagenet": ("tiny-imagenet", "resnet18", "resnet50"),
}


def preset_via_cli(name: str, *extra: str):
    return compare_spec(parse_command(["compare", "--out", "unused", "--preset", name, *extra]))


def test_presets_are_the_shipped_recipes() -> None:
    assert recipe_names()[0] == "cpu" and {"paper-fashion-mnist", "paper-cifar100", "paper-tinyimagenet",
                                          "kd-cifar100", "small-grid-fashion-mnist"} <= set(recipe_names())  # fmt: skip
    assert RunSpec.from_dict(load_recipe("cpu"), "cpu").to_dict() == RunSpec().to_dict()


@pytest.mark.parametrize("name", recipe_names())
def test_every_preset_builds_and_validates(name: str) -> None:
    spec = RunSpec.from_dict(load_recipe(name), name)
    spec.validate(name)
    via_cli = preset_via_cli(name)
    normal = lambda d: json.loads(json.dumps(d))  # noqa: E731
    assert normal(via_cli.to_dict()) == normal(spec.to_dict())  # the CLI keeps the preset whole, its dataset included
    if name == "cpu":
        assert spec.grid is None
    if name in PAPER_SETTINGS:
        dataset, student, teacher = PAPER_SETTINGS[name]
        assert (spec.data.dataset, spec.student.model, spec.teacher.model) == (dataset, student, teacher)
        for opt in (spec.student.optim, spec.teacher.optim, spec.soft_label_config().autoencoder):
            assert (opt.epochs, opt.batch_size, opt.lr, opt.momentum, opt.weight_decay, opt.gamma) == (
                200,
                128,
                0.1,
                0.9,
                5e-4,
                0.2,
            )
            assert opt.resolved_milestones() == [60, 120, 160]
        assert spec.soft_labels.preset == "paper"
        assert spec.to_dict()["grid"] == {
            "methods": ["reffakd"],
            "params": {
                "alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                "temperature": [20.0, 10.0, 5.0, 1.0],
            },
        }
        items = [i for i in spec.run_items() if i.method == "reffakd"]
        assert len(items) == 36 * len(spec.seeds) and not any(i.variant == "reffakd" for i in items)


def test_kd_cifar100_protocol_and_its_learning_rate_rule(tmp_path: Path) -> None:
    spec = RunSpec.from_dict(load_recipe("kd-cifar100"), "kd-cifar100")
    assert (spec.data.dataset, spec.student.model, spec.teacher.model) == (
        "cifar100",
        "resnet8x4",
        "resnet32x4",
    )
    opt = spec.student_config("kd", 0).optim
    assert (opt.epochs, opt.batch_size, opt.lr, opt.weight_decay, opt.gamma, opt.resolved_milestones()) == (
        240,
        64,
        0.05,
        5e-4,
        0.1,
        [150, 180, 210],
    )
    assert spec.student_config("dkd", 0).method_params()["beta"] == 8.0
    assert spec.student_config("dkd-aesl", 0).method_params()["beta"] == 8.0
    assert spec.student_config("kd", 0).method_params() == {"alpha": 0.9, "temperature": 4.0}
    assert spec.teacher.optim.lr == 0.05
    for light in ("mobilenetv2", "shufflenetv1", "shufflenetv2"):
        student = {**spec.student.written, "model": light}
        assert RunSpec.from_dict({**spec.to_dict(), "student": student}, "x").student_config("kd", 0).optim.lr == 0.01
    # A student swapped in by a spec file follows the rule; an explicit lr wins over it.
    swap = tmp_path / "swap.json"
    swap.write_text(json.dumps({"student": {"model": "mobilenetv2"}}))
    assert preset_via_cli("kd-cifar100", "--spec", str(swap)).student_config("dkd", 0).optim.lr == 0.01
    swap.write_text(json.dumps({"student": {"model": "mobilenetv2", "lr": 0.03}}))
    assert preset_via_cli("kd-cifar100", "--spec", str(swap)).student_config("dkd", 0).optim.lr == 0.03
    swap.write_text(json.dumps({"student": {"model": "wrn_16_2"}}))
    assert preset_via_cli("kd-cifar100", "--spec", str(swap)).student_config("ce", 0).optim.lr == 0.05


# --------------------------------------------------------------------------- the alpha x T grid

GRID = {"methods": ["reffakd"], "params": {"alpha": [0.2, 0.8], "temperature": [1, 4]}}
VARIANTS = {
    "reffakd[alpha=0.2,temperature=1]": "reffakd_alpha0.2_temperature1",
    "reffakd[alpha=0.2,temperature=4]": "reffakd_alpha0.2_temperature4",
    "reffakd[alpha=0.8,temperature=1]": "reffakd_alpha0.8_temperature1",
    "reffakd[alpha=0.8,temperature=4]": "reffakd_alpha0.8_temperature4",
}


def grid_argv(out: Path, data: Path, spec: Path) -> list[str]:
    spec.write_text(json.dumps({"methods": ["ce", "reffakd"], "grid": GRID}))
    return compare_argv(out, data, "--seeds", "0,1", "--spec", str(spec))


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> Path:
    base = tmp_path_factory.mktemp("grid")
    assert main(grid_argv(base / "cmp", fake_fmnist, base / "spec.json")) == 0
    return base / "cmp"


def test_grid_runs_every_variant_in_its_own_folder(grid_run: Path) -> None:
    assert sorted(p.name for p in (grid_run / "runs").iterdir()) == sorted(["ce", *VARIANTS.values()])
    for variant, folder in VARIANTS.items():
        for seed in (0, 1):
            s = json.loads((grid_run / "runs" / folder / f"seed{seed}" / "summary.json").read_text())
            assert s["variant"] == variant and s["method"] == "reffakd" and s["seed"] == seed
            assert (s["config"]["alpha"], s["config"]["temperature"]) == (s["grid"]["alpha"], s["grid"]["temperature"])
            assert variant == f"reffakd[alpha={s['config']['alpha']:g},temperature={s['config']['temperature']:g}]"
    with open(grid_run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in rows) == sorted([*VARIANTS, *VARIANTS, "ce", "ce"])
    md = (grid_run / "results.md").read_text()
    for variant in VARIANTS:
        assert re.search(rf"\| {re.escape(variant)} +\| 2 +\|", md)  # one row per variant, two seeds each


def test_grid_variant_selected_by_mean_validation_accuracy(grid_run: Path) -> None:
    with open(grid_run / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "reffakd"]
    mean = lambda v, key: sum(float(r[key]) for r in rows if r["variant"] == v) / 2  # noqa: E731
    best = max(VARIANTS, key=lambda v: (mean(v, "val_top1"), -list(VARIANTS).index(v)))
    lines = [line for line in (grid_run / "results.md").read_text().splitlines() if "selected by validation:" in line]
    assert len(lines) == 1
    assert (
        f"selected by validation: {best}, val {mean(best, 'val_top1'):.2f}, test {mean(best, 'test_top1_selected'):.2f}"
        in lines[0]
    )


def test_grid_resume_skips_finished_variants_and_refuses_another_grid(
    grid_run: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_digest(grid_run / "runs")
    spec = grid_run.parent / "spec.json"
    shutil.rmtree(
        grid_run / "runs" / "reffakd_alpha0.8_temperature4" / "seed1"
    )  # as if killed before the last run finished
    capsys.readouterr()
    assert main(grid_argv(grid_run, fake_fmnist, spec)) == 0
    out = capsys.readouterr().out
    for variant in VARIANTS:
        assert f"skip {variant} seed 0" in out
    assert (
        "skip reffakd[alpha=0.8,temperature=4] seed 1" not in out and "train reffakd[alpha=0.8,temperature=4]-s1" in out
    )
    after = tree_digest(grid_run / "runs")
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed and all(
        k.startswith("reffakd_alpha0.8_temperature4/seed1/") for k in changed
    )  # only the missing run was redone
    spec.write_text(
        json.dumps({"methods": ["ce", "reffakd"], "grid": {**GRID, "params": {**GRID["params"], "alpha": [0.2]}}})
    )
    assert main(compare_argv(grid_run, fake_fmnist, "--seeds", "0,1", "--spec", str(spec))) == 1
    assert "was started with another 'grid'" in capsys.readouterr().err


def _row(variant: str, seed: int, val: float, test: float) -> dict:
    method = variant.split("[")[0]
    return {
        "method": method,
        "variant": variant,
        "seed": seed,
        "alpha": 0.5 if "[" in variant else "",
        "temperature": 4 if "[" in variant else "",
        "soft_target_source": "autoencoder",
        "val_top1": val,
        "test_top1_selected": test,
        "test_top1_last": test,
        "soft_target_flops": 1,
        "soft_target_seconds": 1.0,
        "student_flops": 1,
        "student_seconds": 1.0,
        "total_flops": 2,
        "total_seconds": 2.0,
        "peak_memory_bytes": None,
    }


def test_selection_never_looks_at_test_accuracy() -> None:
    from reffakd.reports.compare_report import aggregate, render_markdown, select_by_validation

    rows = [_row("reffakd[alpha=0.1,temperature=1]", s, 90.0, 50.0) for s in (0, 1)]  # best validation, poor test
    rows += [_row("reffakd[alpha=0.9,temperature=1]", s, 80.0, 99.0) for s in (0, 1)]  # best test
    rows += [_row("reffakd[alpha=0.5,temperature=1]", 0, 99.0, 99.0)]  # best of all, but only one seed of two
    rows += [_row("ce", 0, 95.0, 95.0)]
    agg = aggregate(rows, list(method_names()))
    assert [a["method"] for a in agg] == [
        "ce",
        "reffakd[alpha=0.1,temperature=1]",
        "reffakd[alpha=0.5,temperature=1]",
        "reffakd[alpha=0.9,temperature=1]",
    ]
    chosen = select_by_validation(agg)
    assert list(chosen) == ["reffakd"] and chosen["reffakd"]["method"] == "reffakd[alpha=0.1,temperature=1]"
    assert "selected by validation: reffakd[alpha=0.1,temperature=1], val 90.00, test 50.00" in render_markdown(agg)


@pytest.mark.parametrize(
    "grid,fragment",
    [
        ({"methods": ["ce"], "params": {"alpha": [0.5], "temperature": [4]}}, "method ce takes no parameter 'alpha'"),
        ({"methods": ["reffakd"], "params": {"alpha": [1.5], "temperature": [4]}}, "alpha"),
        ({"methods": ["reffakd"], "params": {"alpha": [0.5, 0.5], "temperature": [4]}}, "distinct"),
        ({"methods": ["reffakd"], "alpha": [0.5]}, "exactly the keys"),
        ({"methods": ["reffakd"], "alpha": [0.5], "temperature": [4]}, "exactly the keys"),  # the old form is gone
        ({"methods": ["nope"], "params": {"alpha": [0.5], "temperature": [4]}}, "unknown method 'nope'"),
    ],
)
def test_bad_grid_is_refused(grid: dict, fragment: str) -> None:
    with pytest.raises(ReffAKDError, match=None) as info:
        RunSpec.from_dict({"methods": ["reffakd"], "grid": grid}, "spec")
    assert fragment in str(info.value)


def test_spec_file_sections_update_the_preset(tmp_path: Path) -> None:
    """A spec's teacher section changes only the keys it names; a checkpoint replaces the section."""
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"teacher": {"model": "resnet20"}, "soft_labels": {"seed": 3}}))
    spec = compare_spec(
        parse_command(
            ["compare", "--out", str(tmp_path / "o"), "--preset", "paper-fashion-mnist", "--spec", str(spec_file)]
        )
    )
    assert spec.teacher.model == "resnet20" and spec.teacher.optim.epochs == 200
    assert list(spec.teacher.optim.milestones) == [60, 120, 160]
    assert spec.soft_labels.seed == 3 and spec.soft_labels.autoencoder["epochs"] == 200
    spec_file.write_text(json.dumps({"teacher": {"checkpoint": "t.safetensors"}}))
    spec = compare_spec(parse_command(["compare", "--out", str(tmp_path / "o"), "--spec", str(spec_file)]))
    assert spec.teacher == TeacherCheckpoint("t.safetensors")


def test_a_folder_started_before_a_new_option_resumes(tmp_path: Path) -> None:
    """Keys a newer version adds with the value None ("unset") do not block resuming an older folder."""
    from reffakd.compare import check_resumable
    from reffakd.spec import RunSpec

    spec = RunSpec()
    old = json.loads(json.dumps(spec.to_dict()))
    old["data"] = {k: v for k, v in old["data"].items() if v is not None}
    (tmp_path / "spec.json").write_text(json.dumps(old))
    check_resumable(tmp_path, spec)
    old["data"]["val_size"] = 123
    (tmp_path / "spec.json").write_text(json.dumps(old))
    with pytest.raises(Exception, match="another 'data'"):
        check_resumable(tmp_path, spec)


def test_jobs_make_the_teacher_and_soft_labels_at_once_and_the_same(
    finished: Path,
    tmp_path: Path,
    fake_fmnist: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --jobs 2 on a GPU the teacher and the soft labels (independent) are made in two workers at once: the same
    artifacts as one after the other in the parent (the `finished` comparison: same spec, one thread each). Tested
    here with CPU workers (on a CPU itself they are made one after the other: the threads are not worth splitting)."""
    from safetensors.torch import load_file

    import reffakd.shared_inputs as inputs
    from reffakd.data import load_splits
    from reffakd.runner import Comparison
    from reffakd.shared_inputs import shared_inputs

    assert not inputs._concurrent_prerequisites(torch.device("cpu"))
    assert inputs._concurrent_prerequisites(torch.device("cuda"))
    monkeypatch.setattr(inputs, "_concurrent_prerequisites", lambda device: True)

    out = tmp_path / "out"
    spec = compare_spec(parse_command(compare_argv(out, fake_fmnist, "--methods", "reffakd,kd", "--seeds", "0")))
    splits = load_splits(spec.data, log=lambda s: None)
    lines: list[str] = []
    cpu = torch.device("cpu")
    shared = shared_inputs(Comparison(spec, out, splits, TrainOptions(cpu, progress=False, log=lines.append)), 2)
    assert lines == ["jobs: soft labels, teacher made at once in 2 worker processes, 1 CPU thread(s) each"]
    printed = capfd.readouterr().out
    assert "[soft labels] autoencoder epoch   1/1" in printed and "[teacher] epoch   1/1" in printed
    assert shared.soft is not None and shared.teacher is not None and shared.soft_semi is None
    for rel in ("softlabels/soft_labels.safetensors", "teacher/best.safetensors"):
        mine, theirs = load_file(out / rel), load_file(finished / rel)
        assert mine.keys() == theirs.keys() and all(mine[k].equal(theirs[k]) for k in mine), rel
    again: list[str] = []
    shared_inputs(
        Comparison(spec, out, splits, TrainOptions(cpu, progress=False, log=again.append)), 2
    )  # made: loaded, no workers
    assert not any(line.startswith("jobs:") for line in again)


# --------------------------------------------------------------------------- speed options


def test_speed_options_reach_every_run_and_the_teacher_and_a_change_is_refused(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    argv = compare_argv(out, fake_fmnist, "--methods", "ce,kd", "--seeds", "0", "--amp", "bf16", "--channels-last")
    assert main(argv) == 0
    assert json.loads((out / "spec.json").read_text())["speed"] == {"amp": "bf16", "channels_last": True}
    for folder in (out / "teacher", out / "runs" / "ce" / "seed0", out / "runs" / "kd" / "seed0"):
        speed = json.loads((folder / "summary.json").read_text())["config"]["speed"]
        assert speed == {"amp": "bf16", "channels_last": True, "compile": False}, folder
    capsys.readouterr()
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,kd", "--seeds", "0", "--amp", "bf16")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was started with another 'speed'" in err[0]


def test_a_comparison_without_speed_options_keeps_its_spec() -> None:
    """A folder started before ``speed`` existed resumes: the key is null when no option is on."""
    spec = compare_spec(parse_command(["compare", "--out", "unused"]))
    assert spec.to_dict()["speed"] is None and spec.speed == RunSpec().speed == SpeedOptions()


@pytest.mark.parametrize(
    ("speed", "fragment"),
    [
        ({"amp": "fp8"}, "speed amp 'fp8' is unknown; allowed: none, bf16, fp16"),
        ({"ampp": "bf16"}, "unknown key 'ampp'"),
        ({"channels_last": "yes"}, "speed channels_last 'yes' has the wrong type"),
        ({"cuda_graph": True, "compile": True}, "cuda_graph and compile are two ways to replay the step"),
    ],
)
def test_bad_speed_in_a_spec_is_one_line(speed: dict, fragment: str) -> None:
    with pytest.raises(ReffAKDError, match=re.escape(fragment)):
        RunSpec.from_dict({"speed": speed}, "spec.json")


def test_cuda_graph_refuses_an_unrecordable_method_before_anything_is_made(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the device check (emulated: no CUDA here), a method whose step does host work is refused in one line
    before the soft labels or the teacher are made; one whose DKD warm-up is only a tuning point is found too."""
    from reffakd.engine import cudagraph

    monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
    out = tmp_path / "cmp"
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,reffakd,kd", "--cuda-graph")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("reffakd: error: --cuda-graph cannot record the training step of kd: the teacher's")
    assert err[0].endswith("; leave kd out of the methods, or compare without --cuda-graph")
    assert not out.exists()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"grid": {"methods": ["dkd-aesl"], "params": {"warmup_epochs": [0, 1]}}}))
    assert main(compare_argv(out, fake_fmnist, "--methods", "ce,dkd-aesl", "--spec", str(spec), "--cuda-graph")) == 1
    assert "training step of dkd-aesl: DKD's warm-up ramps its weight" in capsys.readouterr().err
    assert not out.exists()


def test_cuda_graph_check_builds_every_recordable_method_around_stand_ins(fake_fmnist: Path, monkeypatch) -> None:
    """The stand-in soft labels serve the per-image method too (its table tied to this split), so the check passes
    for every method whose step is device work alone, and nothing is made."""
    from reffakd.compare import check_speed
    from reffakd.data import DataConfig, load_splits
    from reffakd.engine import cudagraph

    monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
    splits = load_splits(DataConfig(data_dir=str(fake_fmnist), download=False, val_size=100), lambda line: None)
    methods = ["ce", "ls", "tfkd-reg", "reffakd", "reffakd-instance", "dkd-aesl"]
    spec = RunSpec.from_dict(
        {"methods": methods, "method_params": {"dkd-aesl": {"warmup_epochs": 0}}, "speed": {"cuda_graph": True}}, "t"
    )
    check_speed(spec, splits, torch.device("cpu"))


def test_a_folder_whose_spec_wrote_a_speed_option_at_its_default_resumes(tmp_path: Path) -> None:
    """``spec.json`` keeps the options switched on; one written at its default (``--amp none``) is none switched on."""
    from reffakd.compare import check_resumable

    spec = RunSpec.from_dict({"methods": ["ce"]}, "spec")
    for saved, same in (({"amp": "none"}, True), ({"amp": "bf16"}, False)):
        out = tmp_path / str(saved["amp"])
        out.mkdir()
        (out / "spec.json").write_text(json.dumps({**spec.to_dict(), "speed": saved}))
        if same:
            check_resumable(out, spec)
        else:
            with pytest.raises(ReffAKDError, match="was started with another 'speed'"):
                check_resumable(out, spec)
