"""The teacher-free rivals (OLS, PS-KD, CS-KD), per-image soft labels, loss forms x sources, and the losses' precision.

Every update rule and loss is checked against an independent NumPy computation of its formula.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ddp_worker
from reffakd import ReffAKDError, pipeline
from reffakd.cli import main
from reffakd.data import BatchAugment, Split, load_imagefolder, make_batches, split_fingerprint, split_train_val
from reffakd.data.images import IMAGE_EXTENSIONS
from reffakd.data.loader import ClassPairs
from reffakd.distillers import build_distiller, get_method
from reffakd.engine import OptimConfig, TrainingInterrupted, TrainOptions, load_state
from reffakd.losses import dkd_terms, kl_to_targets, soft_cross_entropy
from reffakd.models import load_model
from reffakd.pipeline import StudentConfig, train_student
from reffakd.softlabels import SimilarityAccumulator, SoftLabels, build_soft_labels
from reffakd.softlabels.instance import instance_similarity, instance_soft_labels
from reffakd.softlabels.options import soft_label_config
from reffakd.softlabels.similarity import class_similarity
from reffakd.sources import ClassTable, OnlineClassTable, PreviousPredictions, instance_soft_label_source
from reffakd.spec import RunSpec, folder_name
from test_datasets import make_fake_folder

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp(z / t - (z / t).max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))


# --------------------------------------------------------------------------- batches: indices and pairs


@pytest.mark.parametrize("streaming", [False, True])
def test_batches_carry_indices_and_same_class_pairs_seeded_resumable_shardable(tmp_path: Path, streaming: bool) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=8)
    split = split_train_val(load_imagefolder(data_dir=root, streaming=streaming), 4, seed=3).train
    plain = split_train_val(load_imagefolder(data_dir=root), 4, seed=3).train  # the same images, in memory
    labels = split.labels
    kw: dict[str, Any] = dict(shuffle=True, augment=BatchAugment(pad=2, flip=True), num_workers=0, indexed=True)
    single = make_batches(split, 5, generator=torch.Generator().manual_seed(7), pairs=True, **kw)
    batches = list(single)
    for x, y, index in batches:
        b = y.shape[0]
        assert x.shape[0] == 2 * b and torch.equal(labels[index], y)
    # Partners: same class, never the image itself, a function of the permutation and the batch number only.
    pairs = ClassPairs(labels)
    idx = torch.arange(len(labels))
    partner = pairs.partners(idx, 11)
    assert torch.equal(labels[partner], labels) and not (partner == idx).any()
    assert torch.equal(partner, pairs.partners(idx, 11)) and not torch.equal(partner, pairs.partners(idx, 12))
    # In memory and streamed: the same batches.
    memory = list(make_batches(plain, 5, generator=torch.Generator().manual_seed(7), pairs=True, **kw))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(batches, memory))
    # Two shards: each rank's images then its partners; together the single-process batch.
    ranks = [
        list(make_batches(split, 5, generator=torch.Generator().manual_seed(7), pairs=True, shard=(r, 2), **kw))
        for r in range(2)
    ]
    for (x, y, index), parts in zip(batches, zip(*ranks)):
        b = y.shape[0]
        anchors = torch.cat([p[0][: p[1].shape[0]] for p in parts])
        partners = torch.cat([p[0][p[1].shape[0] :] for p in parts])
        assert torch.equal(anchors, x[:b]) and torch.equal(partners, x[b:])
        assert torch.equal(torch.cat([p[2] for p in parts]), index)
    # Resumed inside the epoch: the same rest of the epoch, partners included.
    g = torch.Generator().manual_seed(9)
    again = make_batches(split, 5, generator=g, pairs=True, **kw)
    it = iter(again)
    next(it)
    state, order = g.get_state(), again.order
    tail = list(it)
    g.set_state(state)
    resumed = list(again.iter_from(order, 1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(tail, resumed))


# --------------------------------------------------------------------------- OLS


def test_ols_table_update_and_loss_against_numpy() -> None:
    rng = np.random.default_rng(0)
    src = OnlineClassTable(4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])
    assert torch.equal(src.probabilities(None, labels, 1.0), torch.zeros(8, 4))  # type: ignore[arg-type]
    steps = [rng.normal(size=(8, 4)) * 3 for _ in range(3)]
    for z in steps:
        src.observe(torch.tensor(z, dtype=torch.float32), labels, None)
    src.end_epoch(1)
    # NumPy: mean softmax of the correctly classified images of each class, normalised; 0 for none.
    z = np.concatenate(steps)
    y = np.tile(labels.numpy(), 3)
    p = softmax(z.astype(np.float32).astype(np.float64))
    expected = np.full((4, 4), 0.25)  # uniform for a class never right, as the releases set it
    for c in range(4):
        right = (y == c) & (p.argmax(1) == c)
        if right.any():
            row = p[right].mean(0)
            expected[c] = row / row.sum()
    np.testing.assert_allclose(src.table.numpy(), expected, atol=1e-6)
    assert float(src.counts.sum()) == 0.0  # reset for the next epoch
    # The loss: (1 - a) CE + a H(q_y, softmax(z)).
    logits = torch.tensor(rng.normal(size=(8, 4)))
    distiller = build_distiller("ols", torch.nn.Identity(), num_classes=4)
    distiller.source.table.copy_(torch.tensor(expected))
    _, parts = distiller.forward_train(logits, labels, 1.0)
    q = distiller.source.table.numpy()[labels.numpy()]
    lp = log_softmax(logits.numpy())
    ce = -lp[np.arange(8), labels.numpy()].mean()
    assert float(parts["ce"]) == pytest.approx(0.5 * ce, rel=1e-12)
    assert float(parts["soft"]) == pytest.approx(0.5 * -(q * lp).sum(1).mean(), rel=1e-12)


def test_ols_gives_a_class_never_right_the_uniform_row_as_released() -> None:
    """The releases set ``loss_lams[cls] = 1 / num_classes`` for a class without a correct prediction; a zero row
    left its images without a soft term for the next epoch."""
    src = OnlineClassTable(3)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])  # class 2's one image is wrong
    src.observe(logits, torch.tensor([0, 1, 2]), None)
    src.end_epoch(1)
    np.testing.assert_array_equal(src.table[2].numpy(), np.full(3, 1 / 3))
    assert float(src.table[0].sum()) == pytest.approx(1.0, abs=1e-15) and float(src.table[0, 0]) > 0.9
    distiller = build_distiller("ols", torch.nn.Identity(), num_classes=3)
    _, parts = distiller.forward_train(logits, torch.tensor([0, 1, 2]), 1)
    assert torch.isfinite(parts["soft"])


# --------------------------------------------------------------------------- PS-KD


def test_pskd_schedule_targets_and_update_against_numpy() -> None:
    src = PreviousPredictions(num_samples=6, num_classes=3, final_alpha=0.8, total_epochs=4)
    assert [src.alpha_at(t) for t in (1, 2, 3, 4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    index = torch.arange(6)
    onehot = np.eye(3)[labels.numpy()]
    np.testing.assert_allclose(src.probabilities(None, labels, 1.0, index=index).numpy(), onehot)  # type: ignore[arg-type]
    z = np.random.default_rng(1).normal(size=(6, 3))
    src.observe(torch.tensor(z[:5], dtype=torch.float32), labels[:5], index[:5])  # image 5 not trained this epoch
    src.end_epoch(1)
    a = 0.8 * 2 / 4
    prev = softmax(z.astype(np.float32).astype(np.float64))
    expected = (1 - a) * onehot + a * prev
    expected[5] = onehot[5]  # never seen: its label alone
    got = src.probabilities(None, labels, 1.0, index=index).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # The PS-KD loss: soft cross-entropy against those targets (alpha 1: no separate CE term).
    logits = torch.tensor(np.random.default_rng(2).normal(size=(6, 3)))
    loss = soft_cross_entropy(logits, torch.tensor(expected))
    assert float(loss) == pytest.approx(-(expected * log_softmax(logits.numpy())).sum(1).mean(), rel=1e-12)
    with pytest.raises(ReffAKDError, match="index"):
        src.probabilities(None, labels, 1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CS-KD


def test_cskd_loss_on_a_paired_batch_against_numpy() -> None:
    torch.manual_seed(0)
    student = torch.nn.Linear(5, 3).double()
    distiller = build_distiller("cs-kd", student, num_classes=3, input_shape=None)
    assert distiller.pairs
    x = torch.randn(8, 5, dtype=torch.float64)  # 4 images, then their 4 partners
    y = torch.tensor([0, 1, 2, 1])
    step = distiller.training_step(x, y, 1.0)
    w, b = student.weight.detach().numpy(), student.bias.detach().numpy()
    za, zp = x[:4].numpy() @ w.T + b, x[4:].numpy() @ w.T + b
    t = 4.0
    q = softmax(zp, t)
    kl = (q * (np.log(q) - log_softmax(za / t))).sum(1).mean()
    ce = -log_softmax(za)[np.arange(4), y.numpy()].mean()
    assert float(step.losses["ce"].detach()) == pytest.approx(ce, rel=1e-12)
    assert float(step.losses["kd"].detach()) == pytest.approx(1.0 * t * t * kl, rel=1e-12)
    assert step.outputs.shape == (4, 3)


# --------------------------------------------------------------------------- per-image AESL


def test_per_image_similarity_against_brute_force_pairs() -> None:
    rng = np.random.default_rng(3)
    e = rng.normal(size=(11, 6))
    e[4] = 0.0  # an all-zero embedding: cosine 0 with everything
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0])
    cos = np.zeros((11, 11))
    for i in range(11):
        for j in range(11):
            ni, nj = np.linalg.norm(e[i]), np.linalg.norm(e[j])
            cos[i, j] = e[i] @ e[j] / (ni * nj) if ni > 0 and nj > 0 else 0.0
    expected = np.array([[np.mean([cos[i, j] for j in range(11) if y[j] == c and j != i]) for c in range(3)]
                         for i in range(11)])  # fmt: skip
    et, yt = torch.tensor(e), torch.tensor(y)
    sums = SimilarityAccumulator(3, et.shape[1])  # the class sums the soft-label builder feeds it
    sums.update(et, yt)
    got = instance_similarity(et, yt, sums.class_sums, sums.counts.to(torch.float64))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    # Averaged over a class, the per-image similarities are the class-level matrix.
    means = np.stack([got.numpy()[y == a].mean(0) for a in range(3)])
    np.testing.assert_allclose(means, class_similarity(et, yt, 3).numpy(), atol=1e-12)
    soft = instance_soft_labels(got, yt, diagonal_boost=0.5, temperature=0.1).numpy()
    np.testing.assert_allclose(soft, softmax(expected + 0.5 * np.eye(3)[y], 0.1), atol=1e-12)


def test_per_image_soft_labels_refuse_another_split(tmp_path: Path) -> None:
    images = torch.randint(0, 255, (6, 1, 4, 4), dtype=torch.uint8)
    split = Split(images, torch.tensor([0, 1, 0, 1, 0, 1]))
    other = Split(images.flip(0), split.labels)
    table = torch.softmax(torch.randn(6, 2), 1)
    soft = SoftLabels(
        torch.tensor([[0.7, 0.3], [0.3, 0.7]]), ("a", "b"), metadata={"instance_split": split_fingerprint(split)},
        instance=table, instance_index=torch.arange(6),
    )  # fmt: skip
    soft.save(tmp_path / "s.safetensors")
    loaded = SoftLabels.load(tmp_path / "s.safetensors")
    src = instance_soft_label_source(loaded, split_fingerprint(split))
    assert torch.equal(src.probabilities(None, None, 1.0, index=torch.tensor([4, 1])), table[[4, 1]])  # type: ignore[arg-type]
    with pytest.raises(ReffAKDError, match=r"made on another training split .*rebuild them") as info:
        instance_soft_label_source(loaded, split_fingerprint(other))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- loss forms x sources


def test_any_form_with_any_source_and_nonsense_refused(capsys: pytest.CaptureFixture[str]) -> None:
    m = get_method("dkd+ps-kd")
    assert (m.form, m.target_source, m.source.name) == ("dkd", "ps-kd", "learned")
    assert list(m.params.info()) == ["ce_weight", "alpha", "beta", "temperature", "warmup_epochs", "final_alpha"]
    assert get_method("ps-kd").parameters().to_dict() == {"alpha": 1.0, "final_alpha": 0.8}  # the preset's defaults
    assert get_method("kd+aesl-instance").needs == "soft_labels"
    with pytest.raises(ReffAKDError, match="dkd needs a distribution for every image, but ols"):
        get_method("dkd+ols")
    with pytest.raises(ReffAKDError, match="unknown source 'nope'"):
        get_method("kd+nope")
    # The presets are their form with their source: reffakd is kd+aesl, the same loss.
    table = torch.softmax(torch.randn(3, 3), 1)
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    a = build_distiller("reffakd", torch.nn.Identity(), num_classes=3, soft_labels=_soft(table)).forward_train(
        logits, y, 1.0
    )[1]
    b = build_distiller("kd+aesl", torch.nn.Identity(), num_classes=3, soft_labels=_soft(table)).forward_train(
        logits, y, 1.0
    )[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # From the command line: one line, non-zero exit.
    assert main(["train", "--method", "dkd+ols", "--data-dir", "/nonexistent", "--out", "/tmp/never"]) != 0
    err = capsys.readouterr().err.strip()
    assert "dkd needs a distribution" in err and len(err.splitlines()) == 1


def test_compare_specs_take_combinations() -> None:
    spec = RunSpec(
        methods=["ce", "dkd+ps-kd", "kd+aesl-instance"], seeds=[0], soft_labels={"path": "x.safetensors"},
        method_params={"dkd+ps-kd": {"final_alpha": 0.5}},
    )  # fmt: skip
    spec.validate()
    assert [i.variant for i in spec.run_items()] == ["ce", "dkd+ps-kd", "kd+aesl-instance"]
    assert spec.soft_label_methods() == {"kd+aesl-instance"} and folder_name("dkd+ps-kd") == "dkd+ps-kd"
    assert spec.student_config("dkd+ps-kd", 0).method_params()["final_alpha"] == 0.5
    with pytest.raises(ReffAKDError, match="method dkd\\+ols: dkd needs a distribution"):
        RunSpec(methods=["ce", "dkd+ols"], seeds=[0]).validate()


def _quiet(line: str) -> None:
    pass


def _soft(table: torch.Tensor) -> SoftLabels:
    return SoftLabels(table, tuple("abc"[: table.shape[0]]))


# --------------------------------------------------------------------------- precision


def _release_dkd(z: np.ndarray, t_logits: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    """DKD's release formulas from the teacher's logits, in float64 (its NCKD masks the target with -1000)."""
    gt = np.eye(z.shape[1])[y].astype(bool)
    ps, pt = softmax(z, t), softmax(t_logits, t)
    bs = np.stack([ps[gt], ps[~gt].reshape(len(y), -1).sum(1)], 1)
    bt = np.stack([pt[gt], pt[~gt].reshape(len(y), -1).sum(1)], 1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum(1).mean() * t * t
    qt = softmax(t_logits / t - 1000.0 * gt)
    ls = log_softmax(z / t - 1000.0 * gt)
    nckd = np.where(gt, 0.0, qt * (np.log(np.where(gt, 1.0, qt)) - ls)).sum(1).mean() * t * t
    return float(tckd), float(nckd)


def test_float64_inputs_are_computed_in_float64_and_nckd_is_never_negative() -> None:
    rng = np.random.default_rng(4)
    z, tl, y = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3, rng.integers(0, 5, 6)
    q = torch.softmax(torch.tensor(tl) / 4.0, 1)  # float64 throughout
    tckd, nckd = dkd_terms(torch.tensor(z), torch.tensor(y), q, 4.0)
    assert tckd.dtype == torch.float64
    assert (float(tckd), float(nckd)) == pytest.approx(_release_dkd(z, tl, y, 4.0), rel=1e-10)
    kl = kl_to_targets(torch.tensor(z), q, 4.0)
    expected = (q.numpy() * (np.log(q.numpy()) - log_softmax(z / 4.0))).sum(1).mean()
    assert kl.dtype == torch.float64 and float(kl) == pytest.approx(expected, rel=1e-12)
    # A confident float32 teacher row: non-target mass about e^-90, subnormal in float32. Dividing it by the
    # smallest normal number (the old guard) left a row summing to less than 1 and NCKD = -0.80.
    z1 = np.array([[2.0, 0.5, -1.0, 0.3]])
    t1 = np.array([[90.0, 0.7, 0.1, -0.4]])
    q1 = torch.softmax(torch.tensor(t1, dtype=torch.float32), 1)
    assert 0 < float(q1[0, 1:].sum()) < torch.finfo(torch.float32).tiny
    _, nckd1 = dkd_terms(torch.tensor(z1, dtype=torch.float32), torch.tensor([0]), q1, 1.0)
    release = _release_dkd(z1, t1, np.array([0]), 1.0)[1]
    assert float(nckd1) >= 0.0 and float(nckd1) == pytest.approx(release, rel=1e-3)


def test_float64_runs_keep_every_table_in_float64() -> None:
    """Float64 in, float64 out: Tf-KD's virtual teacher, an AESL table, OLS's table and PS-KD's stored predictions.
    The virtual teacher softened in float32 put Tf-KD's float64 loss 5.7e-4 (relative) off its formula at T = 20."""
    rng = np.random.default_rng(5)
    c, a, t = 10, 0.9, 20.0
    z, y = rng.normal(size=(6, c)), rng.integers(0, c, 6)
    distiller = build_distiller(
        "tfkd-reg", torch.nn.Identity(), num_classes=c, params={"alpha": 1.0, "temperature": t, "own_probability": a}
    )
    _, parts = distiller.forward_train(torch.tensor(z), torch.tensor(y), 1)
    v = np.full((c, c), (1 - a) / (c - 1))
    np.fill_diagonal(v, a)
    q = softmax(v[y], t)
    exact = t * t * (q * (np.log(q) - log_softmax(z / t))).sum(1).mean()
    assert parts["kd"].dtype == torch.float64 and float(parts["kd"]) == pytest.approx(exact, rel=1e-12)
    images, labels = torch.zeros(2, 1, dtype=torch.float64), torch.tensor([0, 2])
    aesl = ClassTable(torch.softmax(torch.randn(3, 3), 1))  # a float32 artifact's table
    assert aesl.probabilities(images, labels, 1.0).dtype == torch.float64
    assert aesl.probabilities(images.float(), labels, 1.0).dtype == torch.float32  # a float32 run stays float32
    assert OnlineClassTable(3).probabilities(images, labels, 1.0).dtype == torch.float64
    # PS-KD: the stored predictions of float64 logits are float64, and so are the targets, resumed too.
    src = PreviousPredictions(num_samples=2, num_classes=3, final_alpha=0.8, total_epochs=2)
    logits = torch.tensor(rng.normal(size=(2, 3)) * 7)
    src.observe(logits, labels, torch.arange(2))
    src.end_epoch(1)
    expected = 0.2 * np.eye(3)[labels.numpy()] + 0.8 * softmax(logits.numpy())
    got = src.probabilities(images, labels, 1.0, index=torch.arange(2))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14, atol=1e-17)
    again = PreviousPredictions(num_samples=2, num_classes=3, final_alpha=0.8, total_epochs=2)
    again.load_extra_state(src.extra_state())
    assert torch.equal(again.probabilities(images, labels, 1.0, index=torch.arange(2)), got)


def _mdistiller_dkd(zs: torch.Tensor, zt: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    """mdistiller's ``dkd_loss`` (alpha 1, beta 8) from the teacher's logits, in the inputs' precision."""
    gt = torch.nn.functional.one_hot(y, zs.shape[1]).bool()
    ps, pt = torch.softmax(zs / t, 1), torch.softmax(zt / t, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = torch.nn.functional.kl_div(torch.log(bs), bt, reduction="sum") * t * t / len(y)
    pt2 = torch.softmax(zt / t - 1000.0 * gt, 1)
    ls2 = torch.log_softmax(zs / t - 1000.0 * gt, 1)
    return tckd + 8.0 * torch.nn.functional.kl_div(ls2, pt2, reduction="sum") * t * t / len(y)


def _weighted(terms: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return terms[0] + 8.0 * terms[1]  # alpha 1, beta 8


def _gradient(at: torch.Tensor, dtype: torch.dtype, loss: Any) -> torch.Tensor:
    z = at.to(dtype).clone().requires_grad_(True)
    loss(z).backward()
    assert z.grad is not None
    return z.grad.double()


def test_dkd_float32_gradient_near_the_teacher_is_as_precise_as_mdistillers() -> None:
    """A student within 1e-3 of its teacher: NCKD's rows are KLs near 0 and about half round below 0. Clamping
    them dropped their gradient (the float32 gradient was up to 100 % of its scale off); now it is within twice
    mdistiller's own float32 error of the float64 gradient."""
    generator = torch.Generator().manual_seed(0)
    ours_err = ref_err = 0.0
    for _ in range(20):
        zt = torch.randn(64, 100, dtype=torch.float64, generator=generator) * 5
        zs = zt + torch.randn(64, 100, dtype=torch.float64, generator=generator) * 1e-3
        y = torch.randint(0, 100, (64,), generator=generator)
        exact = _gradient(zs, torch.float64, lambda z, zt=zt, y=y: _mdistiller_dkd(z, zt, y, 4.0))
        q = torch.softmax(zt / 4.0, 1).float()
        ours = _gradient(zs, torch.float32, lambda z, q=q, y=y: _weighted(dkd_terms(z, y, q, 4.0)))
        theirs = _gradient(zs, torch.float32, lambda z, zt=zt, y=y: _mdistiller_dkd(z, zt.float(), y, 4.0))
        scale = float(exact.abs().max())
        ours_err = max(ours_err, float((ours - exact).abs().max()) / scale)
        ref_err = max(ref_err, float((theirs - exact).abs().max()) / scale)
    assert ours_err <= 2 * ref_err and ours_err < 1e-2, (ours_err, ref_err)


def test_soft_targets_keep_float64_class_tables() -> None:
    table = torch.softmax(torch.randn(3, 3, dtype=torch.float64), 1)
    q = ClassTable(table).probabilities(None, torch.tensor([0, 2]), 1.0)  # type: ignore[arg-type]
    assert q.dtype == torch.float64 and torch.equal(q, table[[0, 2]])


# --------------------------------------------------------------------------- resume and torchrun


@pytest.mark.parametrize("method", ["ols", "ps-kd"])
def test_learning_sources_resume_mid_epoch_bit_identical(
    method: str, fake_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deterministic_one_thread: None
) -> None:
    """SIGTERM in epoch 2: the source's running sums are saved with the step, and epoch 3's targets match."""
    splits = split_train_val(ddp_worker.load_fashion_mnist(fake_fmnist, download=False), val_size=100, seed=0)
    cfg = StudentConfig(method, optim=OptimConfig(epochs=3, batch_size=32, lr=0.05), seed=3)
    quiet = TrainOptions(CPU, progress=False, log=lambda _: None)
    train_student(splits, cfg, tmp_path / "ref", quiet)
    build, calls = pipeline.build_distiller, {"n": 0}

    def build_with_signal(*args: Any, **kwargs: Any) -> Any:
        distiller = build(*args, **kwargs)
        forward = distiller.forward_train

        def forward_train(images: torch.Tensor, targets: torch.Tensor, epoch: float) -> Any:
            calls["n"] += 1
            if calls["n"] == 14:  # the 4th of epoch 2's 10 batches
                os.kill(os.getpid(), signal.SIGTERM)
            return forward(images, targets, epoch)

        distiller.forward_train = forward_train
        return distiller

    monkeypatch.setattr(pipeline, "build_distiller", build_with_signal)
    with pytest.raises(TrainingInterrupted):
        train_student(splits, cfg, tmp_path / "run", quiet)
    assert load_state(tmp_path / "run").running.step == 4
    monkeypatch.setattr(pipeline, "build_distiller", build)
    train_student(splits, cfg, tmp_path / "run", replace(quiet, resume=True))
    wa, wb = (load_model(tmp_path / r / "last.safetensors")[0].state_dict() for r in ("ref", "run"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = (load_state(tmp_path / r).extra["source"]["tensors"] for r in ("ref", "run"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# Two processes train ols and ps-kd as one does: tests/test_distributed.py, in the same torchrun launch as ce.


# --------------------------------------------------------------------------- semi-supervised soft labels


def test_semi_supervised_autoencoder_trains_on_unlabelled_images_too(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=8)
    # other images (a copy of a dataset image is refused); at any depth, without labels here
    extra = make_fake_folder(tmp_path / "extra", per_class=3, seed=1)
    n_extra = sum(1 for p in extra.rglob("*") if p.name.lower().endswith(IMAGE_EXTENSIONS) and p.name[0] != ".")
    splits = split_train_val(load_imagefolder(data_dir=root), 4, seed=3)
    section = {"preset": "paper", "unlabelled_dir": str(extra), "autoencoder": {"epochs": 1, "batch_size": 8}}
    cfg = soft_label_config(section, splits.dataset)
    lines: list[str] = []
    soft, _ = build_soft_labels(splits, cfg, tmp_path / "sl", TrainOptions(CPU, progress=False, log=lines.append))
    assert soft.metadata["autoencoder_images"] == len(splits.train) + n_extra
    assert soft.metadata["config"]["unlabelled_dir"] == str(extra)
    assert any(f"{n_extra} of them unlabelled" in line for line in lines)
    assert soft.instance is not None and soft.instance.shape[0] == len(splits.train)  # labelled images only
    with pytest.raises(ReffAKDError, match="unlabelled image folder .*nowhere does not exist"):
        soft_label_config({**section, "unlabelled_dir": str(tmp_path / "nowhere")}, splits.dataset)
