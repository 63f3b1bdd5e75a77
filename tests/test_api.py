"""The Python API for a user's own loop: ``reffakd``'s top-level names, the example script, the CLI's defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reffakd
from reffakd.cli import parse_command
from reffakd.errors import ReffAKDError
from reffakd.runconfig import check_command

REPO = Path(__file__).resolve().parents[1]


def _blocks(n: int = 160, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-structured 1x16x16 uint8 images: a bright band whose row depends on the class."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):
        images[i, 0, 3 * y + 1 : 3 * y + 4, 2:14] += 150
    return images, labels


def test_every_public_name_is_documented_and_loads() -> None:
    page = (REPO / "docs" / "API.md").read_text()
    for name in reffakd.__all__:
        value = getattr(reffakd, name)
        assert f"`{name}" in page, f"docs/API.md does not list {name}"
        if callable(value):
            assert value.__doc__, f"{name} has no docstring"


def test_the_apis_defaults_are_the_command_lines() -> None:
    cli = check_command(parse_command(["softlabels", "--out", "x"]))
    assert reffakd.default_config("fashion-mnist").to_dict() == cli.to_dict()
    assert reffakd.default_config().to_dict()["preset"] == "paper"


def test_make_soft_labels_from_tensors_and_its_folder(tmp_path: Path) -> None:
    images, labels = _blocks()
    config = reffakd.default_config("tensors", autoencoder_epochs=1)
    soft = reffakd.make_soft_labels((images, labels), config=config, class_names="abcd", log=lambda line: None)
    assert soft.class_names == ("a", "b", "c", "d") and soft.matrix.shape == (4, 4)
    torch.testing.assert_close(soft.matrix.sum(1), torch.ones(4))
    assert soft.instance is not None and soft.instance.shape == (144, 4)  # 160 less the 16 of validation
    out = tmp_path / "soft"
    again = reffakd.make_soft_labels((images, labels), out=out, config=config, class_names="abcd", log=lambda m: None)
    assert torch.equal(again.matrix, soft.matrix)  # seeded: the same soft labels, with or without a folder
    assert (out / "soft_labels.safetensors").is_file() and not (tmp_path / "soft.partial").exists()
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ReffAKDError, match="already exists and is not empty"):
        reffakd.make_soft_labels((images, labels), out=out, config=config, log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing overwritten
    with pytest.raises(ReffAKDError, match="uint8 or floats in"):
        reffakd.splits_from_tensors(images.float(), labels)  # 0..255 floats are not [0, 1] pixels


def test_build_soft_labels_never_writes_over_a_folder(tmp_path: Path) -> None:
    """``reffakd.softlabels.build_soft_labels`` given a folder that holds anything refuses it in one line before
    anything trains (it wrote its files among the folder's, replacing an earlier artifact); a new or an empty folder
    is written as ``.partial`` and renamed at the end, and a folder inside another run's unfinished ``.partial`` is
    refused."""
    from reffakd.engine import TrainOptions
    from reffakd.rundir import staged_run_dir
    from reffakd.softlabels import build_soft_labels

    images, labels = _blocks(48)
    splits = reffakd.splits_from_tensors(images, labels, "abcd", val_size=8)
    config = reffakd.default_config("tensors", autoencoder_epochs=1)
    quiet = TrainOptions(torch.device("cpu"), progress=False, log=lambda line: None)
    full = tmp_path / "full"
    full.mkdir()
    (full / "soft_labels.safetensors").write_bytes(b"an earlier artifact")
    with pytest.raises(ReffAKDError, match=r"^out_dir .*full already exists and is not empty \(it holds soft_lab"):
        build_soft_labels(splits, config, full, quiet)
    assert [p.name for p in full.iterdir()] == ["soft_labels.safetensors"] and not (tmp_path / "full.partial").exists()
    assert (full / "soft_labels.safetensors").read_bytes() == b"an earlier artifact"
    empty = tmp_path / "empty"
    empty.mkdir()
    seen: list[set[str]] = []
    watch = TrainOptions(torch.device("cpu"), progress=False, log=lambda line: seen.append(set(os.listdir(tmp_path))))
    build_soft_labels(splits, config, empty, watch)
    assert "empty.partial" in seen[-1]  # written in the staged folder
    assert (empty / "soft_labels.safetensors").is_file() and not (tmp_path / "empty.partial").exists()
    with pytest.raises(RuntimeError), staged_run_dir(tmp_path / "other") as staging:
        (staging / "resume.safetensors").write_bytes(b"its checkpoint")  # kept for --resume
        raise RuntimeError("an interrupted run")
    with pytest.raises(ReffAKDError, match="lies in the unfinished run folder"):
        build_soft_labels(splits, config, staging / "soft", quiet)


def test_the_losses_look_up_a_class_row_or_an_images_row() -> None:
    images, labels = _blocks()
    splits = reffakd.splits_from_tensors(images, labels)
    soft = reffakd.make_soft_labels(splits, config=reffakd.default_config("tensors", autoencoder_epochs=1),
                                    log=lambda m: None)  # fmt: skip
    logits = torch.randn(5, 4, dtype=torch.float64)
    y, index = splits.train.labels[:5], torch.arange(5)
    by_class = reffakd.ReffAKDLoss(soft, alpha=1.0, temperature=1.0)(logits, y)
    q = soft.matrix[y].double()
    expected = (q * (q.log() - logits.log_softmax(1))).sum(1).mean()  # KL(q || softmax(z)), batch mean
    torch.testing.assert_close(by_class.double(), expected, rtol=1e-5, atol=1e-6)
    per_image = reffakd.InstanceKDLoss(soft, alpha=1.0, temperature=1.0)(logits, y, index)
    assert soft.instance is not None and soft.instance_index is not None
    rows = soft.instance[torch.argsort(soft.instance_index)][index].double()
    expected = (rows * (rows.log() - logits.log_softmax(1))).sum(1).mean()
    torch.testing.assert_close(per_image.double(), expected, rtol=1e-5, atol=1e-6)


def test_the_example_runs(fake_fmnist: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MPLBACKEND": "Agg"}
    args = ["--data-dir", str(fake_fmnist), "--epochs", "1", "--autoencoder-epochs", "1"]
    done = subprocess.run([sys.executable, str(REPO / "examples" / "own_loop.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "epoch 1: loss" in done.stdout and "validation top-1" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no folder left behind


def test_a_hand_made_calibration_is_recorded_as_custom_not_as_a_preset() -> None:
    """An artifact built with the paper's numbers was recorded as "calibrated", SoftLabelConfig's old default."""
    from reffakd.softlabels import Calibration, SoftLabelConfig

    assert SoftLabelConfig(Calibration.preset("paper", "fashion-mnist")).to_dict()["preset"] == "custom"
