"""Labelled budgets: a stratified, seeded labelled subset; the rest unlabelled; validation and test unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from reffakd.cli import main
from reffakd.data import DataConfig, load_splits
from reffakd.data.budget import UNLABELLED, LabelBudget
from reffakd.errors import ReffAKDError
from reffakd.softlabels import SoftLabels


def _hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]


def _splits(data: Path, **budget):
    return load_splits(DataConfig(data_dir=str(data), val_size=100, download=False, **budget), log=lambda s: None)


def test_subset_is_stratified_seeded_and_disjoint_from_validation_and_test(fake_fmnist: Path) -> None:
    full = _splits(fake_fmnist)
    a = _splits(fake_fmnist, labels_per_class=5, label_seed=1)
    assert torch.bincount(a.train.labels, minlength=10).tolist() == [5] * 10
    assert a.budget is not None and a.budget["labelled"] == 50 and a.budget["unlabelled"] == len(full.train) - 50
    assert a.unlabelled is not None and bool((a.unlabelled.labels == UNLABELLED).all())
    # Validation and test are those of the run without a budget; labelled + unlabelled = the full training split.
    assert torch.equal(a.val.images, full.val.images) and torch.equal(a.test.images, full.test.images)
    assert sorted(_hashes(a.train.images) + _hashes(a.unlabelled.images)) == sorted(_hashes(full.train.images))
    assert not set(_hashes(a.train.images)) & (set(_hashes(full.val.images)) | set(_hashes(full.test.images)))
    # Each labelled image keeps its own label.
    label_of = dict(zip(_hashes(full.train.images), full.train.labels.tolist()))
    assert [label_of[h] for h in _hashes(a.train.images)] == a.train.labels.tolist()
    # Seeded: the same seed gives the same subset, another seed another; a larger budget contains a smaller one.
    assert torch.equal(_splits(fake_fmnist, labels_per_class=5, label_seed=1).train.images, a.train.images)
    b = _splits(fake_fmnist, labels_per_class=5, label_seed=2)
    assert not torch.equal(b.train.images, a.train.images) and b.budget["indices_sha256"] != a.budget["indices_sha256"]
    assert set(_hashes(a.train.images)) <= set(
        _hashes(_splits(fake_fmnist, labels_per_class=9, label_seed=1).train.images)
    )
    frac = _splits(fake_fmnist, label_fraction=0.25)
    sizes = torch.bincount(full.train.labels, minlength=10)
    assert torch.bincount(frac.train.labels, minlength=10).tolist() == [max(1, round(0.25 * n)) for n in sizes.tolist()]


@pytest.mark.parametrize(
    "budget,fragment",
    [
        ({"labels_per_class": 0}, "labels_per_class 0 is out of range"),
        ({"label_fraction": 1.5}, "label_fraction 1.5 is out of range"),
        ({"labels_per_class": 5, "label_fraction": 0.5}, "exactly one of labels_per_class and label_fraction"),
        ({"labels_per_class": 10_000}, "labels_per_class 10000 is out of range: class"),
    ],
)
def test_bad_budgets_are_one_line(fake_fmnist: Path, budget: dict, fragment: str) -> None:
    with pytest.raises(ReffAKDError) as info:
        _splits(fake_fmnist, **budget)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_soft_labels_of_another_subset_are_refused() -> None:
    soft = SoftLabels(torch.eye(3), ("a", "b", "c"), metadata={"labelled": None})
    soft.check_labelled(None)
    record = {"labels_per_class": 5, "seed": 0, "labelled": 15, "unlabelled": 30, "indices_sha256": "ab"}
    with pytest.raises(ReffAKDError, match=r"made with all labels but this run has 5 labels per class \(seed 0\)"):
        soft.check_labelled(record)
    LabelBudget(per_class=1)  # valid


def test_cli_budget_reaches_soft_labels_and_the_student(tmp_path: Path, fake_fmnist: Path) -> None:
    data = ["--data-dir", str(fake_fmnist), "--val-size", "100", "--no-progress", "--no-download", "--device", "cpu"]
    budget = ["--labels-per-class", "4", "--label-seed", "3"]
    soft = tmp_path / "soft"
    assert main(["softlabels", "--out", str(soft), *data, *budget, "--ae-epochs", "1", "--ae-batch-size", "64"]) == 0
    meta = json.loads((soft / "soft_labels.json").read_text())["metadata"]
    assert meta["labelled"]["labels_per_class"] == 4 and meta["labelled"]["labelled"] == 40
    train = ["train", "--method", "reffakd", "--soft-labels", str(soft / "soft_labels.safetensors"), *data]
    train += ["--epochs", "1", "--batch-size", "16"]
    # Another subset (another seed) is refused in one line, before a run folder exists.
    assert main([*train, "--out", str(tmp_path / "other"), "--labels-per-class", "4", "--label-seed", "4"]) != 0
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.partial").exists()
    assert main([*train, "--out", str(tmp_path / "run"), *budget]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["train_images"] == 40 and summary["labelled"]["seed"] == 3
