"""``reffakd`` end to end on every dataset format, from fakes in their true on-disk layouts.

Each successful ``reffakd run`` (1 autoencoder epoch, 1 epoch per student) must exit 0, write
``summary.json`` and leave the source tree byte-identical. Bad input must give exit status 1,
one ``reffakd: error:`` line naming the problem, and nothing written: neither ``--out`` nor its
``.partial`` exists and the test's folder is unchanged (only the private cache may grow; it lives
outside, see conftest's ``_private_cache``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import make_fake_fashion_mnist, tree_digest
from reffakd.cli import main
from test_datasets import AWKWARD, make_fake_cifar, make_fake_folder, make_fake_tiny_imagenet, png

COMMON = ["--no-progress", "--no-download", "--device", "cpu"]
FLAGS = {
    "run": ["--epochs", "1", "--ae-epochs", "1", "--batch-size", "16", *COMMON],
    "train": ["--epochs", "1", "--batch-size", "16", *COMMON],
    "softlabels": ["--ae-epochs", "1", *COMMON],
}
RUN = FLAGS["run"]


def snapshot(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Every file's digest and every folder's name under ``folder``."""
    return tree_digest(folder), sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_dir())


# --------------------------------------------------------------------------- every format, end to end

# name -> (build the fake under a folder and return --data-dir, extra flags, classes, channels)
FORMATS: dict[str, tuple[Callable[[Path], Path], list[str], int, int]] = {
    "cifar10": (lambda d: make_fake_cifar(d, "cifar10", n=40).parent, ["--val-size", "20"], 10, 3),
    # 1,500 images over 100 classes: every class keeps the 2 images its within-class similarity needs
    "cifar100": (lambda d: make_fake_cifar(d, "cifar100", n=1500).parent, ["--val-size", "100"], 100, 3),
    "tiny-imagenet": (
        lambda d: make_fake_tiny_imagenet(d, per_class=6),
        ["--val-size", "3", "--image-size", "32"],
        3,
        3,
    ),
    "imagefolder": (lambda d: make_fake_folder(d / "photos", per_class=10), ["--val-size", "4"], 3, 3),
    "mnist": (lambda d: make_fake_fashion_mnist(d / "digits", n_train=300, n_test=60), ["--val-size", "50"], 10, 1),
}


@pytest.mark.parametrize(
    "dataset,model",
    [
        ("cifar10", "lenet5"),
        ("cifar100", "lenet5"),
        ("tiny-imagenet", "lenet5"),
        ("imagefolder", "lenet5"),
        ("mnist", "lenet5"),
        ("cifar10", "resnet8"),
    ],
)
def test_run_on_every_format(dataset: str, model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, extra, classes, channels = FORMATS[dataset]
    data_dir = build(tmp_path / "src")
    source = snapshot(tmp_path / "src")
    out = tmp_path / "out"
    rc = main(
        ["run", "--dataset", dataset, "--data-dir", str(data_dir), *extra, *RUN, "--model", model, "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["dataset"] == dataset and [r["name"] for r in summary["runs"]] == ["ce", "reffakd-paper"]
    for run in summary["runs"]:
        assert run["model"] == model and 0 <= run["test_best"]["top1"] <= 100
    meta = json.loads((out / "ce" / "best.json").read_text(encoding="utf-8"))
    assert len(meta["class_names"]) == classes and meta["in_channels"] == channels
    if dataset == "imagefolder":
        assert meta["class_names"] == list(AWKWARD)  # spaces and non-ASCII survive into the checkpoint
    if dataset == "tiny-imagenet":
        assert meta["image_size"] == [32, 32]
    assert not (tmp_path / "out.partial").exists()
    assert snapshot(tmp_path / "src") == source  # read in place, never modified


# --------------------------------------------------------------------------- bad input through the CLI


def one_class(d: Path) -> list[str]:
    png(d / "only" / "a.png", np.random.default_rng(0))
    return ["run", "--dataset", "imagefolder", "--data-dir", str(d)]


def empty_class(d: Path) -> list[str]:
    make_fake_folder(d, per_class=3)
    (d / "empty one").mkdir()
    return ["run", "--dataset", "imagefolder", "--data-dir", str(d)]


def garbage_png(d: Path) -> list[str]:
    make_fake_folder(d, per_class=3)
    (d / "Ünïcode" / "img 1.png").write_bytes(b"\x89PNG but not really an image")
    return ["run", "--dataset", "imagefolder", "--data-dir", str(d)]


def no_annotations(d: Path) -> list[str]:
    root = make_fake_tiny_imagenet(d)
    (root / "val" / "val_annotations.txt").unlink()
    return ["run", "--dataset", "tiny-imagenet", "--data-dir", str(d), "--image-size", "32"]


def small_images(d: Path) -> list[str]:
    """24x24 images: the size is known only once the folder is read, so the check after loading catches it."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(4):
            png(d / cls / f"{i}.png", rng, 24, 24)
    return ["run", "--dataset", "imagefolder", "--data-dir", str(d), "--model", "mobilenetv2"]


def cifar(d: Path, *flags: str, command: str = "run") -> list[str]:
    make_fake_cifar(d, "cifar10", n=12)
    return [command, "--dataset", "cifar10", "--data-dir", str(d), *flags]


def mnist(d: Path, *flags: str, command: str = "run") -> list[str]:
    make_fake_fashion_mnist(d, n_train=60, n_test=20)
    return [command, "--dataset", "mnist", "--data-dir", str(d), *flags]


BAD: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    "imagefolder with one class": (one_class, ["'only'", "at least 2"]),
    "empty class folder": (empty_class, ["empty one", "holds no images"]),
    "unreadable image": (garbage_png, ["img 1.png", "unreadable image"]),
    "tiny imagenet without val_annotations.txt": (no_annotations, ["val_annotations.txt", "missing"]),
    "resnet18 at 8x8": (
        lambda d: cifar(d, "--model", "resnet18", "--image-size", "8"),
        ["resnet18 needs inputs of at least 16x16, got 8x8"],
    ),
    "mobilenetv2 at 24x24 found on loading": (small_images, ["mobilenetv2 needs inputs of at least 32x32, got 24x24"]),
    "mobilenetv2 at 28x28 (run)": (
        lambda d: mnist(d, "--model", "mobilenetv2", "--image-size", "28"),
        ["mobilenetv2 needs inputs of at least 32x32, got 28x28"],
    ),
    "mobilenetv2 at 28x28 (train)": (
        lambda d: mnist(d, "--model", "mobilenetv2", "--image-size", "28", command="train"),
        ["mobilenetv2 needs inputs of at least 32x32, got 28x28"],
    ),
    "autoencoder at 28x28 (softlabels)": (
        lambda d: mnist(d, "--image-size", "28", command="softlabels"),
        ["multiples of 8, got 28x28"],
    ),
    "--test-dir with cifar10": (
        lambda d: cifar(d, "--test-dir", str(d)),
        ["--test-dir does not apply to --dataset cifar10"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, fragments = BAD[case]
    argv = build(tmp_path / "src")
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    rc = main([*argv, *FLAGS[argv[0]], "--val-size", "4", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("reffakd: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert not out.exists() and not (tmp_path / "out.partial").exists()
    assert snapshot(tmp_path) == before
