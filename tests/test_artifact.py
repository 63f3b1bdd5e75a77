"""SoftLabels: save/load round trip and validation of everything a loss relies on."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from reffakd import ReffAKDError, SoftLabels

NAMES = ("cat", "dog", "émeu")


def make(matrix: torch.Tensor | None = None) -> SoftLabels:
    m = matrix if matrix is not None else torch.softmax(torch.randn(3, 3), 1)
    return SoftLabels(m, NAMES, torch.rand(3, 3, dtype=torch.float64), {"dataset": "toy", "seed": 3})


def test_round_trip(tmp_path) -> None:
    soft = make()
    path = soft.save(tmp_path / "soft.safetensors")
    loaded = SoftLabels.load(path)
    torch.testing.assert_close(loaded.matrix, soft.matrix)
    torch.testing.assert_close(loaded.similarity, soft.similarity)
    assert loaded.class_names == NAMES and loaded.metadata == {"dataset": "toy", "seed": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soft.json", "soft.safetensors"]  # no temporary files left


@pytest.mark.parametrize(
    "matrix,match",
    [
        (torch.ones(3, 2) / 2, "square"),
        (torch.ones(2, 2) / 2, "class names"),
        (torch.tensor([[0.5, 0.5, float("nan")]] * 3), "NaN"),
        (torch.tensor([[1.5, -0.5, 0.0]] * 3), "negative"),
        (torch.full((3, 3), 0.3), "sum to 1"),
    ],
)
def test_invalid_matrices_are_refused_on_load(tmp_path, matrix: torch.Tensor, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({"soft_labels": matrix.contiguous()}, str(path))
    (tmp_path / "bad.json").write_text(json.dumps({"class_names": list(NAMES)}))
    with pytest.raises(ReffAKDError, match=match):
        SoftLabels.load(path)


def test_unreadable_and_missing_files(tmp_path) -> None:
    with pytest.raises(ReffAKDError, match="does not exist"):
        SoftLabels.load(tmp_path / "none.safetensors")
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00not a safetensors file" * 10)
    (tmp_path / "garbage.json").write_text(json.dumps({"class_names": list(NAMES)}))
    with pytest.raises(ReffAKDError, match="unreadable"):
        SoftLabels.load(path)
    make().save(tmp_path / "ok.safetensors")
    (tmp_path / "ok.json").write_text("{not json")
    with pytest.raises(ReffAKDError, match="malformed"):
        SoftLabels.load(tmp_path / "ok.safetensors")


def test_class_mismatch_is_refused() -> None:
    soft = make()
    soft.check_matches(NAMES)
    with pytest.raises(ReffAKDError, match="3 classes but .* has 10"):
        soft.check_matches([str(i) for i in range(10)])
    with pytest.raises(ReffAKDError, match="differ"):
        soft.check_matches(("cat", "dog", "emu"))


def test_wrong_suffix_is_refused(tmp_path) -> None:
    with pytest.raises(ReffAKDError, match="safetensors"):
        make().save(tmp_path / "soft.pt")
