"""The structure study's building blocks: placebo structures, mass and sharpness set apart, a network's class table.

Golden values come from the formulas written out here independently of ``softlabels.structure``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from reffakd.cli import main
from reffakd.data import DataConfig, load_splits
from reffakd.distillers import build_distiller
from reffakd.errors import ReffAKDError
from reffakd.losses import label_smoothing_ce, soft_target_kd
from reffakd.softlabels import Calibration, SoftLabels
from reffakd.softlabels.similarity import similarity_to_soft_labels
from reffakd.softlabels.structure import restructure, shuffle_off_diagonal, uniform_off_diagonal, with_structure
from reffakd.sources import TeacherNetwork, network_class_table

C = 6


def _table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.rand(C, C, generator=g, dtype=torch.float64) * 4, dim=1)


def _off(row: torch.Tensor, own: int) -> list[float]:
    return [float(v) for j, v in enumerate(row) if j != own]


def test_shuffled_keeps_the_diagonal_and_permutes_each_rows_other_entries() -> None:
    table = _table()
    shuffled = shuffle_off_diagonal(table, seed=3)
    assert torch.equal(shuffled.diagonal(), table.diagonal())
    torch.testing.assert_close(shuffled.sum(1), torch.ones(C, dtype=torch.float64), rtol=0, atol=1e-15)
    for i in range(C):  # the same multiset of values: each row keeps its entropy
        assert sorted(_off(shuffled[i], i)) == sorted(_off(table[i], i))
    assert not torch.equal(shuffled, table)
    assert torch.equal(shuffle_off_diagonal(table, seed=3), shuffled)  # seeded: reproducible
    assert not torch.equal(shuffle_off_diagonal(table, seed=4), shuffled)
    entropy = lambda t: -(t * t.log()).sum(1)  # noqa: E731
    torch.testing.assert_close(entropy(shuffled), entropy(table))


def test_shuffled_per_image_rows_keep_each_images_own_class_entry() -> None:
    labels = torch.tensor([2, 0, 5, 2])
    rows = torch.softmax(torch.rand(4, C, generator=torch.Generator().manual_seed(1)), dim=1)
    out = with_structure(rows, "shuffled", 7, labels)
    for k, y in enumerate(labels.tolist()):
        assert out[k, y] == rows[k, y]
        assert sorted(_off(out[k], y)) == sorted(_off(rows[k], y))
    uniform = with_structure(rows, "uniform", 0, labels)
    for k, y in enumerate(labels.tolist()):
        assert uniform[k, y] == rows[k, y]
        torch.testing.assert_close(torch.tensor(_off(uniform[k], y)), torch.full((C - 1,), (1 - float(rows[k, y])) / 5))


def test_uniform_is_label_smoothing_at_the_same_mass() -> None:
    """Golden values: label smoothing's target (1 - eps) onehot + eps / C has own mass 1 - eps + eps / C."""
    eps = 0.3
    own = 1 - eps + eps / C
    uniform = restructure(_table(), own=own, structure="uniform")
    expected = torch.full((C, C), eps / C, dtype=torch.float64)
    expected.fill_diagonal_(own)
    torch.testing.assert_close(uniform, expected, rtol=0, atol=1e-15)
    # The table kept its rows' own masses when no mass is set
    table = _table(2)
    kept = uniform_off_diagonal(table)
    assert torch.equal(kept.diagonal(), table.diagonal())
    torch.testing.assert_close(kept.sum(1), torch.ones(C, dtype=torch.float64))
    # ... and the KD loss at T = 1 against it is label smoothing's CE less the target's entropy (a constant)
    logits, labels = torch.randn(5, C, dtype=torch.float64), torch.tensor([0, 3, 1, 5, 2])
    q = uniform[labels]
    kl = soft_target_kd(logits, labels, q, alpha=1.0, temperature=1.0)["kd"]
    entropy = -(q * q.log()).sum(1).mean()
    torch.testing.assert_close(kl + entropy, label_smoothing_ce(logits, labels, eps))


def test_own_mass_and_off_temperature_golden_values() -> None:
    table, scores = _table(), torch.rand(C, C, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    p, t = 0.55, 0.2
    out = restructure(table, own=p, scores=scores, off_temperature=t)
    for i in range(C):
        others = [j for j in range(C) if j != i]
        weights = torch.tensor([float(scores[i, j]) / t for j in others], dtype=torch.float64).exp()
        expected = (1 - p) * weights / weights.sum()
        assert float(out[i, i]) == pytest.approx(p, abs=1e-15)
        torch.testing.assert_close(out[i, others], expected, rtol=1e-13, atol=0)
    # without an off temperature the table's own off-diagonal proportions are kept
    kept = restructure(table, own=p)
    for i in range(C):
        others = [j for j in range(C) if j != i]
        torch.testing.assert_close(kept[i, others], (1 - p) * table[i, others] / table[i, others].sum())


def test_the_separated_calibration_reproduces_the_paper_preset() -> None:
    similarity = torch.rand(C, C, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    similarity = (similarity + similarity.T) / 2
    cal = Calibration.preset("paper", "fashion-mnist")
    paper, tau = cal.apply(similarity)
    assert torch.equal(paper, similarity_to_soft_labels(similarity, cal.diagonal_boost, 1.0)) and tau == 1.0
    assert restructure(paper) is paper  # every knob at its default: the very table, bit for bit
    # the rows' own masses as they come, the rest as softmax(similarity / tau) over the other classes: the same table
    separated = restructure(paper, scores=similarity, off_temperature=tau)
    torch.testing.assert_close(separated, paper, rtol=0, atol=1e-16)


def _soft_labels(structure: str = "similarity") -> SoftLabels:
    similarity = torch.rand(C, C, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    matrix = similarity_to_soft_labels(similarity, 0.008, 1.0)
    names = tuple(f"c{i}" for i in range(C))
    return SoftLabels(matrix, names, similarity, {"structure": structure, "config": {"preset": "paper"}})


def test_an_artifact_with_another_structure_is_refused() -> None:
    student = nn.Linear(4, C)
    for method in ("aesl-similarity", "aesl-shuffled", "aesl-uniform"):
        with pytest.raises(ReffAKDError, match="made with structure .shuffled.*needs similarity ones"):
            build_distiller(method, student, num_classes=C, soft_labels=_soft_labels("shuffled"))
    # the plain ReffAKD source uses a placebo artifact as made, and says so in what the run records
    distiller = build_distiller("reffakd", student, num_classes=C, soft_labels=_soft_labels("uniform"))
    assert distiller.describe()["structure"] == "uniform"
    assert "structure" not in build_distiller("reffakd", student, num_classes=C, soft_labels=_soft_labels()).describe()


def test_structure_arms_record_their_shape_and_keep_the_matched_mass() -> None:
    soft, student = _soft_labels(), nn.Linear(4, C)
    tables = {}
    for structure in ("similarity", "shuffled", "uniform"):
        params = {"own_mass": 0.6} | ({} if structure == "uniform" else {"off_temperature": 0.1})
        d = build_distiller(f"aesl-{structure}", student, num_classes=C, soft_labels=soft, params=params)
        assert d.describe()["structure"] == structure and d.describe()["own_mass"] == 0.6
        tables[structure] = d.source.table
        assert d.source.cost(0) is soft.cost
    for table in tables.values():  # matched mass: every row exactly 0.6
        torch.testing.assert_close(table.diagonal(), torch.full((C,), 0.6, dtype=torch.float64))
    sharp = restructure(soft.matrix.to(torch.float64), own=0.6, scores=soft.similarity, off_temperature=0.1)
    torch.testing.assert_close(tables["similarity"], sharp)
    # default knobs: the artifact's own rows
    d = build_distiller("aesl-similarity", student, num_classes=C, soft_labels=soft)
    assert torch.equal(d.source.table, soft.matrix.to(torch.float64))


class _Pixels(nn.Module):
    """A deterministic classifier of normalised 1x32x32 images: logits from fixed pixel weights."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32 * 32, 10)
        torch.nn.init.normal_(self.linear.weight, std=0.05, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_a_networks_class_table_is_the_mean_softmax_per_class(fake_fmnist: Path) -> None:
    splits = load_splits(DataConfig(data_dir=str(fake_fmnist), val_size=100, download=False), log=lambda s: None)
    model = _Pixels()
    teacher = TeacherNetwork(model, 10, forward_flops_per_image=123)
    table, stage = network_class_table(teacher, splits)
    x = splits.train.images.float().div(255)
    mean, std = torch.tensor(splits.mean).view(1, -1, 1, 1), torch.tensor(splits.std).view(1, -1, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(model((x - mean) / std).double(), 1)
    for c in range(10):  # brute force: the plain mean over the class's images
        torch.testing.assert_close(table[c], probs[splits.train.labels == c].mean(0), rtol=1e-6, atol=1e-7)
    assert stage["flops"] == 123 * len(splits.train) and stage["details"]["images"] == len(splits.train)
    student = nn.Linear(4, 10)
    d = build_distiller(
        "teacher-table-uniform", student, num_classes=10, teacher=teacher, data=splits, params={"own_mass": 0.7}
    )
    assert d.describe()["source"] == "teacher-table-uniform"
    torch.testing.assert_close(d.source.table.diagonal(), torch.full((10,), 0.7, dtype=torch.float64))
    assert "teacher_class_table" in d.source.cost(0)["stages"]
    with pytest.raises(ReffAKDError, match="needs them"):
        build_distiller("teacher-table-similarity", student, num_classes=10, teacher=teacher)


def test_augmentation_options(fake_fmnist: Path) -> None:
    cfg = DataConfig(data_dir=str(fake_fmnist), val_size=100, download=False, crop_pad=0, flip=False)
    augment = load_splits(cfg, log=lambda s: None).augment
    assert (augment.pad, augment.flip) == (0, False)
    assert load_splits(DataConfig(data_dir=str(fake_fmnist), val_size=100, download=False, crop_pad=2),
                       log=lambda s: None).augment.pad == 2  # fmt: skip
    with pytest.raises(ReffAKDError, match="crop_pad 99 is out of range"):
        DataConfig(crop_pad=99)


def test_softlabels_structure_end_to_end(tmp_path: Path, fake_fmnist: Path) -> None:
    data = ["--data-dir", str(fake_fmnist), "--val-size", "100", "--no-progress", "--no-download", "--device", "cpu"]
    out = tmp_path / "soft"
    assert main(["softlabels", "--out", str(out), *data, "--ae-epochs", "1", "--structure", "shuffled"]) == 0
    soft = SoftLabels.load(out / "soft_labels.safetensors")
    assert soft.metadata["structure"] == "shuffled"
    assert soft.metadata["config"]["calibration"]["structure"] == "shuffled"
    assert (out / "diagnostics.txt").read_text().startswith("structure: shuffled")
    similarity = soft.similarity
    paper = Calibration.preset("paper", "fashion-mnist").apply(similarity)[0]
    torch.testing.assert_close(soft.matrix, shuffle_off_diagonal(paper, 0).float())
    plain = tmp_path / "plain"  # the same autoencoder without the placebo: the per-image rows got it too
    assert main(["softlabels", "--out", str(plain), *data, "--ae-epochs", "1"]) == 0
    similar = SoftLabels.load(plain / "soft_labels.safetensors")
    assert similar.metadata["structure"] == "similarity" and torch.equal(similar.similarity, similarity)
    splits = load_splits(DataConfig(data_dir=str(fake_fmnist), val_size=100, download=False), log=lambda s: None)
    assert soft.instance is not None and similar.instance is not None
    torch.testing.assert_close(soft.instance, with_structure(similar.instance, "shuffled", 0, splits.train.labels))
    rc = main(["train", "--out", str(tmp_path / "t"), "--method", "aesl-similarity", "--soft-labels",
               str(out / "soft_labels.safetensors"), *data, "--epochs", "1"])  # fmt: skip
    assert rc != 0 and not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()
    rc = main(["train", "--out", str(tmp_path / "r"), "--method", "reffakd", "--soft-labels",
               str(out / "soft_labels.safetensors"), *data, "--epochs", "1"])  # fmt: skip
    assert rc == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["config"]["structure"] == "shuffled"


def test_a_spec_refuses_a_placebo_artifact_for_the_arms_that_make_their_own() -> None:
    from reffakd.spec import RunSpec

    spec = RunSpec(methods=["aesl-shuffled"], soft_labels={"preset": "paper", "structure": "uniform"})
    with pytest.raises(ReffAKDError, match="apply their own structure"):
        spec.validate()
    with pytest.raises(ReffAKDError, match="structure 'sorted' is unknown"):
        RunSpec(methods=["reffakd"], soft_labels={"preset": "paper", "structure": "sorted"}).validate()
    RunSpec(methods=["reffakd"], soft_labels={"preset": "paper", "structure": "uniform"}).validate()


def test_a_float64_run_gets_the_structured_table_in_float64() -> None:
    soft, labels = _soft_labels(), torch.tensor([0, 4, 2])
    d = build_distiller("aesl-similarity", nn.Linear(4, C), num_classes=C, soft_labels=soft, params={"own_mass": 0.6})
    exact = restructure(soft.matrix.to(torch.float64), own=0.6)[labels]
    wide = d.source.probabilities(torch.zeros(3, 4, dtype=torch.float64), labels, 1.0)
    assert wide.dtype == torch.float64 and torch.equal(wide, exact)
    narrow = d.source.probabilities(torch.zeros(3, 4), labels, 1.0)
    assert narrow.dtype == torch.float32 and torch.equal(narrow, exact.float())
