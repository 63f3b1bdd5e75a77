"""`reffakd cost`: FLOP counts x a recipe's images and epochs, checked against the convolutions' own arithmetic."""

from __future__ import annotations

import json

import pytest

from reffakd import ReffAKDError
from reffakd.cli import main
from reffakd.cost import recipe_cost
from reffakd.recipes import load_recipe
from reffakd.spec import RunSpec


def conv_flops(c_in: int, c_out: int, k: int, out_side: int) -> int:
    """2 x MACs of a square convolution: one k x k x c_in dot product per output value."""
    return 2 * c_in * k * k * c_out * out_side * out_side


def test_paper_fashion_mnist_cost_from_flop_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--preset", "paper-fashion-mnist", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    stages = {s["stage"]: s for s in cost["stages"]}
    assert cost["train_images"] == 55_000 and cost["val_images"] == 5_000 and cost["input_shape"] == [1, 32, 32]
    # The encoder by hand: three stride-2 4x4 convolutions, 1 -> 12 -> 24 -> 48 channels, 32 -> 16 -> 8 -> 4.
    encoder = conv_flops(1, 12, 4, 16) + conv_flops(12, 24, 4, 8) + conv_flops(24, 48, 4, 4)
    assert stages["embedding (encoder)"]["flops_per_image"] == encoder
    assert stages["embedding (encoder)"]["flops"] == encoder * 55_000
    assert stages["autoencoder training steps"]["epochs"] == 200
    assert stages["class similarity"]["flops"] == 4 * 55_000 * 768 + 2 * 10 * 10 * 768
    fwd = stages["teacher validation"]["flops_per_image"]
    assert stages["teacher forward while the student trains"]["flops"] == fwd * 55_000 * 200
    assert (
        stages["teacher training steps"]["model"] == "resnet18"
        and stages["student training steps"]["model"] == "lenet5"
    )
    totals = cost["totals"]
    assert totals["reffakd soft targets"] == sum(
        s["flops"] for s in cost["stages"] if s["group"] == "reffakd soft targets"
    )
    assert cost["teacher_over_reffakd"] == pytest.approx(
        totals["teacher soft targets"] / totals["reffakd soft targets"]
    )
    assert cost["teacher_over_reffakd"] > 100


def test_cost_table_is_labelled_as_computed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--preset", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Computed from the models' FLOP counts" in out and "nothing was trained" in out
    assert "| **teacher soft targets, total** |" in out


def test_cost_of_a_dataset_of_unknown_size_is_one_line() -> None:
    spec = RunSpec.from_dict({**load_recipe("cpu"), "data": {"dataset": "imagefolder", "data_dir": "/x"}}, "test")
    with pytest.raises(ReffAKDError, match="cost needs the size of dataset 'imagefolder'"):
        recipe_cost(spec, "test")
