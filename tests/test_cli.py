"""The ``reffakd`` command line, driven in-process on the tiny fake Fashion-MNIST.

Successful commands leave whole run folders; bad input gives exit status 1, exactly one
``reffakd: error:`` line on stderr, no traceback, and nothing at ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import FASHION_MNIST_CLASSES, tree_digest
from reffakd.cli import main
from reffakd.data import fashion_mnist as fm
from reffakd.softlabels import SoftLabels

FMNIST_CLASSES = list(FASHION_MNIST_CLASSES)
STUDENT = ["--epochs", "1", "--batch-size", "64"]
AUTOENCODER = ["--ae-epochs", "1", "--ae-batch-size", "64"]


def data_args(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir), "--val-size", "100", "--no-progress", "--no-download", "--device", "cpu"]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- commands that succeed


@pytest.mark.usefixtures("plots")
def test_run_end_to_end(tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    source = tree_digest(fake_fmnist)
    rc = main(["run", "--out", str(out), *data_args(fake_fmnist), *AUTOENCODER, *STUDENT])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err == ""
    assert f"run folder: {out}" in captured.out

    assert out.is_dir() and not (tmp_path / "run.partial").exists()
    assert not leftovers(out)
    soft = out / "softlabels"
    for name in ("soft_labels.safetensors", "soft_labels.json", "soft_labels.png", "reconstructions.png"):
        assert (soft / name).is_file() and (soft / name).stat().st_size > 0, name
    loaded = SoftLabels.load(soft / "soft_labels.safetensors")
    assert list(loaded.class_names) == FMNIST_CLASSES
    torch.testing.assert_close(loaded.matrix.sum(1), torch.ones(10), atol=1e-4, rtol=0)

    for student in ("ce", "reffakd-paper"):
        folder = out / student
        for name in ("best.safetensors", "best.json", "last.safetensors", "last.json", "summary.json"):
            assert (folder / name).is_file(), f"{student}/{name}"
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1
        for epoch, line in enumerate(lines, 1):
            record = json.loads(line)
            assert record["epoch"] == epoch
            for key in ("train_loss", "val_top1", "val_top5", "lr", "seconds"):
                assert isinstance(record[key], (int, float)), f"{student} {key}"
            assert 0 <= record["val_top1"] <= record["val_top5"] <= 100
        meta = json.loads((folder / "best.json").read_text())
        assert meta["class_names"] == FMNIST_CLASSES and meta["method"] == ("ce" if student == "ce" else "reffakd")

    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == ["ce", "reffakd-paper"]
    assert summary["train_images"] == 300 and summary["val_images"] == 100 and summary["test_images"] == 100
    table = (out / "summary.md").read_text()
    assert "ce" in table and "reffakd-paper" in table
    assert (out / "curves.png").stat().st_size > 0
    assert tree_digest(fake_fmnist) == source


def test_softlabels_train_evaluate(tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = data_args(fake_fmnist)
    soft_dir, run_dir = tmp_path / "soft", tmp_path / "student"

    assert main(["softlabels", "--out", str(soft_dir), *data, *AUTOENCODER]) == 0
    soft_file = soft_dir / "soft_labels.safetensors"
    assert soft_file.is_file() and (soft_dir / "soft_labels.json").is_file()
    assert not (tmp_path / "soft.partial").exists()
    assert str(soft_file) in capsys.readouterr().out

    argv = [
        "train",
        "--out",
        str(run_dir),
        "--method",
        "reffakd",
        "--soft-labels",
        str(soft_file),
        *data,
        *STUDENT,
        "--epochs",
        "2",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # one line per epoch
    assert all("train_kd" in r and "train_ce" in r for r in records)  # both ReffAKD loss terms logged
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "reffakd"
    assert summary["cost"]["soft_targets"] is not None  # soft_labels_cost.json beside the soft labels was picked up
    assert not (tmp_path / "student.partial").exists()

    for split in ("test", "val"):
        assert main(["evaluate", "--checkpoint", str(run_dir / "best.safetensors"), "--split", split, *data]) == 0
        captured = capsys.readouterr()
        assert "error" not in captured.err and "Traceback" not in captured.err
        result = json.loads(captured.out.strip().splitlines()[-1])  # the result is the last line on stdout
        assert result["split"] == split and result["epoch"] == summary["best_epoch"]
        assert 0 <= result["top1"] <= result["top5"] <= 100
        assert result["images"] == 100
    # The test split is the one train_student reported for the best checkpoint.
    assert main(["evaluate", "--checkpoint", str(run_dir / "best.safetensors"), *data]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["top1"] == pytest.approx(summary["test_best"]["top1"])


# --------------------------------------------------------------------------- bad input


def soft_labels_for_three_classes(tmp_path: Path) -> list[str]:
    path = SoftLabels(torch.full((3, 3), 1 / 3), ("a", "b", "c")).save(tmp_path / "three.safetensors")
    return ["train", "--method", "reffakd", "--soft-labels", str(path)]


def garbage_soft_labels(tmp_path: Path) -> list[str]:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"this is not a safetensors file\n" * 20)
    path.with_suffix(".json").write_text(json.dumps({"class_names": FMNIST_CLASSES}))
    return ["train", "--method", "reffakd", "--soft-labels", str(path)]


def rows_not_summing_to_one(tmp_path: Path) -> list[str]:
    path = tmp_path / "rows.safetensors"
    save_file({"soft_labels": torch.full((10, 10), 0.2)}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"format": "reffakd-soft-labels/1", "class_names": FMNIST_CLASSES}))
    return ["train", "--method", "reffakd", "--soft-labels", str(path)]


def garbage_checkpoint(tmp_path: Path) -> list[str]:
    path = tmp_path / "ckpt" / "best.safetensors"
    path.parent.mkdir()
    path.write_bytes(os.urandom(2048))
    return ["evaluate", "--checkpoint", str(path)]


def missing_checkpoint(tmp_path: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(tmp_path / "nowhere" / "best.safetensors")]


def existing_run_folder(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run\n")
    return ["train"]


BAD_INPUT: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # id: (setup returning the command and its specific options, a fragment of the message)
    "existing-run-folder": (existing_run_folder, "already exists"),
    "alpha-above-1": (lambda _: ["run", "--alpha", "1.5"], "alpha"),
    "alpha-negative": (lambda _: ["run", "--alpha", "-0.1"], "alpha"),
    "temperature-zero": (lambda _: ["run", "-T", "0"], "temperature"),
    "boost-negative": (lambda _: ["run", "--boost", "-1"], "boost"),
    "target-own-prob-above-1": (lambda _: ["run", "--target-own-prob", "1.5"], "own-class probability"),
    "val-size-zero": (lambda _: ["run", "--val-size", "0"], "--val-size 0"),
    "compile-mode-without-compile": (
        lambda _: ["train", "--compile-mode", "reduce-overhead"],
        "--compile-mode reduce-overhead applies only with --compile; add --compile or drop --compile-mode",
    ),
    "soft-labels-three-classes": (soft_labels_for_three_classes, "3 classes"),
    "soft-labels-garbage": (garbage_soft_labels, "unreadable"),
    "soft-labels-rows-not-summing-to-1": (rows_not_summing_to_one, "sum to 1"),
    "reffakd-without-soft-labels": (lambda _: ["train", "--method", "reffakd"], "--soft-labels"),
    "checkpoint-garbage": (garbage_checkpoint, "unreadable"),
    "checkpoint-missing": (missing_checkpoint, "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, fragment = BAD_INPUT[case]
    argv = setup(tmp_path)
    out = tmp_path / "out"
    if argv[0] != "evaluate":
        argv = [argv[0], "--out", str(out), *data_args(fake_fmnist), *argv[1:]]  # case options come last and win
    else:
        argv = [*argv, *data_args(fake_fmnist)]
    before = tree_digest(tmp_path)
    source = tree_digest(fake_fmnist)

    rc = main(argv)
    captured = capsys.readouterr()
    assert rc not in (0, None)
    assert_one_error_line(captured.err, fragment)
    assert "Traceback" not in captured.out
    assert tree_digest(tmp_path) == before  # nothing created, nothing changed
    assert not (tmp_path / "out.partial").exists()
    assert case == "existing-run-folder" or not out.exists()
    assert tree_digest(fake_fmnist) == source


def assert_one_error_line(err: str, fragment: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reffakd: error:"), err
    assert fragment in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "train", "softlabels"])
def test_no_dataset_anywhere_names_the_three_sources(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    debian = tmp_path / "no-debian"
    debian.mkdir()
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    out = tmp_path / "out"
    rc = main([command, "--out", str(out), *data_args(debian)[2:]])  # no --data-dir: an explicit one never falls back
    err = capsys.readouterr().err
    assert rc not in (0, None)
    assert_one_error_line(err, "Fashion-MNIST not found")
    assert "--data-dir (not given)" in err and str(debian) in err and "torchvision download" in err
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def lenet_checkpoint(tmp_path: Path, **meta: object) -> Path:
    """An untrained LeNet-5 checkpoint for Fashion-MNIST; ``meta`` overrides metadata entries."""
    from reffakd.models import create_model
    from reffakd.models.checkpoint import save_checkpoint

    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    base = {
        "model": "lenet5",
        "num_classes": 10,
        "in_channels": 1,
        "image_size": [32, 32],
        "class_names": FMNIST_CLASSES,
        "mean": [0.3],
        "std": [0.35],
    }
    return save_checkpoint(tmp_path / "ckpt" / "best.safetensors", model, {**base, **meta})


def test_evaluate_without_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A valid checkpoint but no dataset anywhere: still one line.
    ckpt = lenet_checkpoint(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "empty")
    rc = main(["evaluate", "--checkpoint", str(ckpt), *data_args(tmp_path / "empty")[2:]])
    assert rc not in (0, None)
    assert_one_error_line(capsys.readouterr().err, "torchvision download")


def test_evaluate_checkpoint_for_other_classes(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lenet_checkpoint(tmp_path, class_names=[c.upper() for c in FMNIST_CLASSES])
    rc = main(["evaluate", "--checkpoint", str(ckpt), *data_args(fake_fmnist)])
    assert rc not in (0, None)
    assert_one_error_line(capsys.readouterr().err, "trained on classes")


def test_evaluate_checkpoint_with_malformed_metadata(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lenet_checkpoint(tmp_path, image_size=32)
    rc = main(["evaluate", "--checkpoint", str(ckpt), *data_args(fake_fmnist)])
    assert rc not in (0, None)
    assert_one_error_line(capsys.readouterr().err, "image_size")


def test_malformed_soft_label_cost_file(tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = SoftLabels(torch.eye(10), tuple(FMNIST_CLASSES)).save(tmp_path / "soft" / "soft_labels.safetensors")
    (path.parent / "soft_labels_cost.json").write_text("{broken")
    out = tmp_path / "out"
    rc = main(
        [
            "train",
            "--out",
            str(out),
            "--method",
            "reffakd",
            "--soft-labels",
            str(path),
            *data_args(fake_fmnist),
            *STUDENT,
        ]
    )
    assert rc not in (0, None)
    assert_one_error_line(capsys.readouterr().err, "soft_labels_cost.json")
    assert not out.exists()


def test_console_entry_point_in_a_subprocess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One stderr line and exit 1 for a user error, a bad flag included; the second through the installed entry
    point (``python -m reffakd``, one subprocess: its start is seconds of the suite)."""
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--alpha", "1.5"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "reffakd: error: alpha 1.5 is out of range: it must lie in [0, 1]"
    ]
    assert not out.exists()
    flag = subprocess.run(
        [sys.executable, "-m", "reffakd", "train", "--out", str(out), "--method", "dkd-typo"],
        capture_output=True,
        text=True,
    )
    assert flag.returncode == 1 and len(flag.stderr.strip().splitlines()) == 1  # argparse's mistakes: one line too
    assert flag.stderr.startswith("reffakd: error: reffakd train: argument --method: invalid choice: 'dkd-typo'")


def test_help_methods_and_argument_errors_import_no_torch() -> None:
    """``--help`` of every command, ``reffakd methods`` and argument errors import no torch (its import is seconds;
    ``benchmarks/startup.py`` times them): one subprocess runs them all and lists what of torch it imported."""
    driver = """
import contextlib, io, json, sys
from reffakd.cli import main
from reffakd.runconfig import COMMANDS
runs = [["--help"], ["methods"], ["config", "--help"], ["train", "--bogus"], ["train", "--method", "nope"],
        ["export", "--input", "int8"], *([c, "--help"] for c in COMMANDS)]
codes = []
for argv in runs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as exc:
            codes.append(exc.code)
print(json.dumps({"codes": codes, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["torch"] == []
    assert result["codes"][:6] == [0, 0, 0, 1, 1, 1] and set(result["codes"][6:]) == {0}


def test_the_cli_catalog_is_the_registry() -> None:
    """catalog.json (the registry's names and flags for help without torch) is the registry's own; rewrite it with
    ``REFFAKD_WRITE_CATALOG=1 pytest tests/test_cli.py -k catalog`` after a method, a source or a form changes."""
    from reffakd.distillers import methods, registry  # noqa: F401  (methods: registers them)

    live = registry.catalog()
    if os.environ.get("REFFAKD_WRITE_CATALOG"):
        registry.CATALOG.write_text(json.dumps(live, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    stored = json.loads(registry.CATALOG.read_text(encoding="utf-8"))
    assert stored == live, "src/reffakd/distillers/catalog.json is stale: " + (
        test_the_cli_catalog_is_the_registry.__doc__ or ""
    )


# --------------------------------------------------------------------------- interrupt, resume, torchrun


def _train_argv(out: Path, data: Path, epochs: int = 6) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reffakd",
        "train",
        "--out",
        str(out),
        "--data-dir",
        str(data),
        "--no-download",
        "--val-size",
        "100",
        "--batch-size",
        "32",
        "--epochs",
        str(epochs),
        "--no-progress",
        "--no-plots",
        "--seed",
        "3",
    ]


def test_resume_without_an_interrupted_run_is_one_error_line(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _train_argv(tmp_path / "none", fake_fmnist)[3:] + ["--resume"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no interrupted run to continue" in err[0]
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()


def test_a_run_stopped_before_its_first_checkpoint_continues_with_the_advised_command(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL in the first epoch leaves OUT.partial without a resume checkpoint (a full disk or an error there no
    longer do: the folder is removed, test_reliability). The refusal of the plain command advises --resume, and that
    command works: it starts the run afresh in the folder (it used to answer "no interrupted run to continue", sending
    the user back and forth)."""
    from reffakd.rundir import _take, partial_path, release_lock

    out = tmp_path / "cut"
    release_lock(_take(partial_path(out), resume=False, redo=False))  # what a killed run leaves: no cleanup ran
    (partial_path(out) / "metrics.jsonl").write_text('{"epoch": 1, "train_lo')  # a first epoch cut short
    argv = _train_argv(out, fake_fmnist)[3:]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and len(err.splitlines()) == 1
    advised = err.split("continue with: reffakd ", 1)[1].split()
    assert advised[-1] == "--resume" and main(advised) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 7)) and (out / "summary.json").is_file()
