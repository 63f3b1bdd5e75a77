"""The method registry is the one home of a method: a method registered from this file alone, with a parameter no
other method has, trains from the CLI, varies in a comparison grid and appears in reports and in the docs' table."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reffakd.cli import main
from reffakd.distillers import (
    BuildContext,
    Distiller,
    Params,
    Range,
    method_names,
    methods_table,
    param,
    register_method,
    unregister_method,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class GainParams(Params):
    gain: float = param(1.0, "multiplier of the cross-entropy", range=Range(0.0, 10.0, low_open=True), tune=(0.5, 2.0))


class ScaledCE(Distiller):
    def __init__(self, student: nn.Module, gain: float) -> None:
        super().__init__(student)
        self.gain = gain

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor, epoch: float) -> Any:
        logits = self.student(images)
        return logits, {"ce": self.gain * F.cross_entropy(logits, targets)}

    def describe(self) -> dict[str, Any]:
        return {"gain": self.gain}


@pytest.fixture
def scaled_ce() -> Iterator[str]:
    def build(student: nn.Module, p: GainParams, source: Any, ctx: BuildContext) -> Distiller:
        return ScaledCE(student, p.gain)

    register_method("scaled-ce", params=GainParams, summary="cross-entropy times a gain (a test method)")(build)
    yield "scaled-ce"
    unregister_method("scaled-ce")


def common(data: Path) -> list[str]:
    return ["--data-dir", str(data), "--no-download", "--val-size", "100", "--no-progress", "--device", "cpu"]


def test_a_new_method_trains_from_the_cli_with_its_own_flag(
    scaled_ce: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--method", scaled_ce, "--gain", "0.5", "--epochs", "1", "--batch-size", "64"]
    assert main([*argv, *common(fake_fmnist)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == scaled_ce and summary["config"]["gain"] == 0.5
    capsys.readouterr()
    bad = ["train", "--out", str(tmp_path / "bad"), "--method", scaled_ce, "--gain", "20", *common(fake_fmnist)]
    assert main(bad) == 1
    assert capsys.readouterr().err.strip() == "reffakd: error: gain 20.0 is out of range: it must lie in (0, 10]"
    assert main(["train", "--out", str(tmp_path / "other"), "--method", "ce", "--gain", "2", *common(fake_fmnist)]) == 1
    assert "method ce takes no parameter 'gain'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "other").exists()


def test_a_new_method_varies_in_a_comparison_and_is_reported(
    scaled_ce: str, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--methods", f"{scaled_ce},ce", "--seeds", "0", "--epochs", "1"]
    assert main([*argv, "--vary", "gain=0.5,2", *common(fake_fmnist)]) == 0
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["ce", "scaled-ce_gain0.5", "scaled-ce_gain2"]
    with open(out / "results.csv", newline="") as f:
        variants = [r["variant"] for r in csv.DictReader(f)]
    assert variants == ["ce", "scaled-ce[gain=0.5]", "scaled-ce[gain=2]"]  # report order: registration order
    assert "scaled-ce" in (out / "results.md").read_text()
    capsys.readouterr()
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    row = "| `scaled-ce` | method | - | gain 1, (0, 10] | gain 0.5, 2 | cross-entropy times a gain (a test method) |"
    assert row in listing
    assert "| `--gain` | float | scaled-ce: multiplier of the cross-entropy (default 1) |" in listing


def test_the_methods_page_shows_the_registry() -> None:
    """docs/METHODS.md's tables are `reffakd methods`, pasted between the markers: the page cannot drift."""
    assert "scaled-ce" not in method_names()
    page = (REPO / "docs" / "METHODS.md").read_text()
    start, end = "<!-- reffakd methods: start -->\n", "<!-- reffakd methods: end -->"
    assert start in page and end in page
    assert page.split(start)[1].split(end)[0].strip() == methods_table()


def test_a_shared_parameter_name_keeps_one_type() -> None:
    @dataclass(frozen=True)
    class IntAlpha(Params):
        alpha: int = param(1, "an alpha of another type")

    with pytest.raises(ValueError, match="parameter 'alpha' of clash is int"):
        register_method("clash", params=IntAlpha)(lambda *a: None)
    assert "clash" not in method_names()
