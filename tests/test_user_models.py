"""The user's own architectures: any ``nn.Module`` from Python, and timm's by name from the command line.

A timm model trains as a student and serves as a teacher from the CLI with its FLOPs in the ledger;
a name that is not a model, or a model that does not fit the input, is one line and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from reffakd.cli import main
from reffakd.data import DataConfig, load_splits
from reffakd.engine import OptimConfig, TrainOptions
from reffakd.errors import ReffAKDError
from reffakd.models import MODELS, load_model, register_model
from reffakd.pipeline import StudentConfig, train_student
from reffakd.sources import teacher_from_module


def data_args(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir), "--val-size", "100", "--no-progress", "--no-download", "--device", "cpu"]


ONE_STEP = ["--epochs", "1", "--batch-size", "300"]  # the fake set's 300 training images: one step


def test_a_timm_model_is_a_student_and_a_teacher_from_the_cli(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("timm")
    data = data_args(fake_fmnist)
    teacher = tmp_path / "teacher"
    assert main(["train", "--out", str(teacher), "--model", "timm/test_vit", "--method", "ce", *data, *ONE_STEP]) == 0
    summary = json.loads((teacher / "summary.json").read_text())
    assert summary["model"] == "timm/test_vit" and summary["forward_flops_per_image"] > 0
    assert summary["cost"]["student"]["flops"] > 0
    model, meta = load_model(teacher / "best.safetensors")  # rebuilt by name, no hub involved
    assert meta["in_channels"] == 1 and model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)

    student = tmp_path / "student"
    argv = ["train", "--out", str(student), "--method", "kd", "--teacher", str(teacher / "best.safetensors"), *data]
    assert main([*argv, *ONE_STEP]) == 0
    ledger = json.loads((student / "summary.json").read_text())["cost"]["soft_targets"]
    # the teacher's forward passes over the training images (one step of 300), and its own training run
    assert ledger["flops"] >= summary["forward_flops_per_image"] * 300 + summary["cost"]["totals"]["flops"]
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "extra", "says"),
    [
        ("timm/no_such_net", [], "unknown --model 'timm/no_such_net': timm has no architecture 'no_such_net'"),
        ("timm/test_vit", ["--image-size", "8"], "model timm/test_vit does not fit 3x8x8 inputs"),
        ("lenet6", [], "unknown --model 'lenet6'"),
    ],
)
def test_a_bad_name_or_a_model_that_does_not_fit_is_one_line(
    model: str, extra: list[str], says: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if model.startswith("timm/"):
        pytest.importorskip("timm")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--model", model, *data_args(fake_fmnist), *extra, *ONE_STEP]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


class TinyNet(nn.Module):
    """A user's own classifier, known to no registry."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_your_own_module_as_the_student_from_python(tmp_path: Path, fake_fmnist: Path) -> None:
    splits = load_splits(DataConfig(data_dir=str(fake_fmnist), val_size=100, download=False), log=lambda line: None)
    cfg = StudentConfig(method="ls", optim=OptimConfig(epochs=1, batch_size=300))
    quiet = TrainOptions(progress=False, log=lambda line: None)
    summary = train_student(splits, cfg, tmp_path / "run", quiet, model=TinyNet())
    assert summary["model"] == "TinyNet" and summary["forward_flops_per_image"] > 0
    checkpoint = tmp_path / "run" / "best.safetensors"
    with pytest.raises(ReffAKDError, match=r"register_model\('TinyNet'\)"):
        load_model(checkpoint)
    register_model("TinyNet")(lambda *, num_classes, in_channels, image_size: TinyNet(num_classes, in_channels))
    try:
        model, meta = load_model(checkpoint)  # now evaluate, export, predict and --teacher can rebuild it
        assert isinstance(model, TinyNet) and meta["model"] == "TinyNet"
    finally:
        del MODELS["TinyNet"]
    # Your own module as the teacher: its forward passes are in the student's ledger.
    teacher = teacher_from_module(TinyNet(), splits, torch.device("cpu"))
    kd = train_student(splits, StudentConfig(method="kd", optim=OptimConfig(epochs=1, batch_size=300)), tmp_path / "kd",
                       quiet, teacher=teacher)  # fmt: skip
    assert kd["cost"]["soft_targets"]["flops"] == teacher.forward_flops_per_image * 300 > 0
    with pytest.raises(ReffAKDError, match=r"model TinyNet returns \(2, 3\) for a batch of 2 images of 1x32x32"):
        train_student(splits, cfg, tmp_path / "bad", TrainOptions(log=lambda line: None), model=TinyNet(3))
    assert not (tmp_path / "bad").exists()
