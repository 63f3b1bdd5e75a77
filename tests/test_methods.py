"""Golden-value tests of every method's loss against independent computations from its formula.

References are NumPy float64, term by term from the published definitions; DKD is also checked
against its release's formulation (teacher logits with the target masked by -1000) and against the
decomposition KD = TCKD + (1 - q_y) NCKD that the DKD paper proves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reffakd import ReffAKDError
from reffakd.distillers import DISTILLERS, DKD, build_distiller, method_params
from reffakd.losses import dkd_loss, dkd_terms, label_smoothing_ce, soft_target_kd
from reffakd.softlabels import SoftLabels
from reffakd.sources import ClassTable, TeacherNetwork, uniform_table, virtual_teacher_table


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max()
    return z - m - math.log(np.exp(z - m).sum())


def np_kl(p: np.ndarray, log_q: np.ndarray) -> float:
    return float(sum(pi * (math.log(pi) - lq) for pi, lq in zip(p, log_q) if pi > 0))


def ref_kd(logits, targets, q_rows, alpha, t) -> float:
    ce = kl = 0.0
    for z, y, q in zip(logits, targets, q_rows):
        ce -= np_log_softmax(z)[y]
        kl += np_kl(q, np_log_softmax(z / t))
    n = len(targets)
    return (1 - alpha) * ce / n + alpha * t * t * kl / n


def ref_dkd(logits, targets, q_rows, t) -> tuple[float, float]:
    """Per sample: binary (target, rest) KL and the KL among non-target classes renormalised; T^2; batch mean."""
    tckd = nckd = 0.0
    for z, y, q in zip(logits, targets, q_rows):
        p = np.exp(np_log_softmax(z / t))
        bt, bs = np.array([q[y], 1 - q[y]]), np.array([p[y], 1 - p[y]])
        tckd += np_kl(bt, np.log(bs))
        keep = np.arange(len(z)) != y
        qn, pn = q[keep] / q[keep].sum(), p[keep] / p[keep].sum()
        nckd += np_kl(qn, np.log(pn))
    n = len(targets)
    return t * t * tckd / n, t * t * nckd / n


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    c, n = 6, 11
    logits = rng.normal(scale=2.5, size=(n, c))
    teacher = rng.normal(scale=3.0, size=(n, c))
    targets = rng.integers(0, c, size=n)
    return logits, teacher, targets


@pytest.mark.parametrize("t", [1.0, 4.0, 20.0])
def test_dkd_terms_match_numpy(batch, t: float) -> None:
    logits, teacher, targets = batch
    q = np.stack([np.exp(np_log_softmax(z / t)) for z in teacher])
    tckd, nckd = dkd_terms(
        torch.tensor(logits, dtype=torch.float32), torch.tensor(targets), torch.tensor(q, dtype=torch.float32), t
    )
    ref_t, ref_n = ref_dkd(logits, targets, q, t)
    assert float(tckd) == pytest.approx(ref_t, rel=1e-4, abs=1e-6)
    assert float(nckd) == pytest.approx(ref_n, rel=1e-4, abs=1e-6)


def test_dkd_hand_computed_value() -> None:
    # Three classes, y = 0, student logits 0 (p = 1/3 each), teacher q = (0.5, 0.3, 0.2), T = 1.
    # TCKD = 0.5 log(0.5 / (1/3)) + 0.5 log(0.5 / (2/3)); NCKD = 0.6 log(0.6 / 0.5) + 0.4 log(0.4 / 0.5).
    parts = dkd_loss(
        torch.zeros(1, 3),
        torch.tensor([0]),
        torch.tensor([[0.5, 0.3, 0.2]]),
        ce_weight=1.0,
        alpha=1.0,
        beta=8.0,
        temperature=1.0,
    )
    assert float(parts["ce"]) == pytest.approx(math.log(3), abs=1e-6)
    assert float(parts["tckd"]) == pytest.approx(0.5 * math.log(1.5) + 0.5 * math.log(0.75), abs=1e-6)
    assert float(parts["nckd"]) == pytest.approx(8 * (0.6 * math.log(1.2) + 0.4 * math.log(0.8)), abs=1e-6)
    assert float(parts["tckd"]) == pytest.approx(0.0589, abs=1e-4)  # literal, pinned


def release_style_dkd(logits_s, logits_t, target, alpha, beta, t):
    """DKD as its authors' code computes it, from teacher logits (written here from the paper's equations)."""
    gt = F.one_hot(target, logits_s.shape[1]).float()
    other = 1 - gt
    ps, pt = F.softmax(logits_s / t, 1), F.softmax(logits_t / t, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * other).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * other).sum(1)], 1)
    tckd = F.kl_div(torch.log(bs), bt, reduction="sum") * t**2 / target.shape[0]
    log_ps_nt = F.log_softmax(logits_s / t - 1000.0 * gt, 1)
    pt_nt = F.softmax(logits_t / t - 1000.0 * gt, 1)
    nckd = F.kl_div(log_ps_nt, pt_nt, reduction="sum") * t**2 / target.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("alpha,beta,t", [(1.0, 8.0, 4.0), (1.0, 2.0, 4.0), (0.5, 1.0, 1.0)])
def test_dkd_matches_the_release_formulation(batch, alpha: float, beta: float, t: float) -> None:
    logits, teacher, targets = (torch.tensor(a) for a in batch)
    zs, zt = logits.double(), teacher.double()
    ours = dkd_loss(zs, targets, F.softmax(zt / t, 1), ce_weight=0.0, alpha=alpha, beta=beta, temperature=t)
    assert float(ours["tckd"] + ours["nckd"]) == pytest.approx(
        float(release_style_dkd(zs, zt, targets, alpha, beta, t)), rel=1e-5
    )


def test_dkd_decomposes_kd(batch) -> None:
    """Per sample: T^2 KL(q || p) = TCKD + (1 - q_y) NCKD (Zhao et al. 2022, eq. 3)."""
    logits, teacher, targets = batch
    t = 3.0
    for i in range(len(targets)):
        z, y = torch.tensor(logits[i : i + 1]), torch.tensor(targets[i : i + 1])
        q = F.softmax(torch.tensor(teacher[i : i + 1]) / t, 1)
        tckd, nckd = dkd_terms(z, y, q, t)
        kd = soft_target_kd(z, y, q, alpha=1.0, temperature=t)["kd"]
        assert float(kd) == pytest.approx(float(tckd + (1 - q[0, y[0]]) * nckd), rel=1e-4, abs=1e-6)


def test_dkd_with_a_one_hot_teacher_row_is_finite() -> None:
    z = torch.randn(2, 4, requires_grad=True)
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
    parts = dkd_loss(z, torch.tensor([0, 3]), q, ce_weight=1.0, alpha=1.0, beta=8.0, temperature=4.0)
    sum(parts.values()).backward()
    assert all(torch.isfinite(v) for v in parts.values()) and torch.isfinite(z.grad).all()


def test_dkd_warmup_is_linear_then_full() -> None:
    dkd = DKD(
        nn.Linear(2, 3),
        ClassTable(uniform_table(3)),
        ce_weight=1.0,
        alpha=1.0,
        beta=8.0,
        temperature=4.0,
        warmup_epochs=4,
    )
    assert [dkd.warmup_factor(e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert (
        DKD(
            nn.Linear(2, 3), ClassTable(uniform_table(3)), ce_weight=1, alpha=1, beta=1, temperature=1, warmup_epochs=0
        ).warmup_factor(1)
        == 1.0
    )


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_label_smoothing_matches_numpy(batch, eps: float) -> None:
    logits, _, targets = batch
    c = logits.shape[1]
    ref = np.mean(
        [-(1 - eps) * np_log_softmax(z)[y] - eps / c * np_log_softmax(z).sum() for z, y in zip(logits, targets)]
    )
    assert float(label_smoothing_ce(torch.tensor(logits), torch.tensor(targets), eps)) == pytest.approx(ref, rel=1e-6)


def test_label_smoothing_is_kd_with_a_uniform_source_up_to_a_constant() -> None:
    """CE(smoothed) = (1 - eps) CE + eps H(u, p) and H(u, p) = KL(u || p) + log C: the same gradient as
    KD(u, T=1, alpha=eps)."""
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (5,))
    label_smoothing_ce(z, y, 0.2).backward()
    g_ls = z.grad.clone()
    z.grad = None
    q = ClassTable(uniform_table(4)).probabilities(None, y, 1.0).double()  # type: ignore[arg-type]
    sum(soft_target_kd(z, y, q, alpha=0.2, temperature=1.0).values()).backward()
    torch.testing.assert_close(g_ls, z.grad)


@pytest.mark.parametrize("alpha,t", [(0.5, 4.0), (0.9, 1.0), (0.1, 20.0)])
def test_kd_with_a_teacher_network_matches_numpy(batch, alpha: float, t: float) -> None:
    logits, teacher_logits, targets = batch
    c = logits.shape[1]
    images = torch.arange(len(targets), dtype=torch.float64)[:, None]

    class Lookup(nn.Module):  # a "network" whose output for image i is the fixed teacher logits row i
        def forward(self, x):
            return torch.tensor(teacher_logits)[x[:, 0].long()]

    source = TeacherNetwork(Lookup(), c, forward_flops_per_image=0)
    q = source.probabilities(images, torch.tensor(targets), t)
    parts = soft_target_kd(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets), q, alpha, t)
    q_ref = np.stack([np.exp(np_log_softmax(z / t)) for z in teacher_logits])
    assert float(parts["ce"] + parts["kd"]) == pytest.approx(ref_kd(logits, targets, q_ref, alpha, t), rel=1e-5)


def test_tfkd_reg_virtual_teacher_matches_its_definition(batch) -> None:
    """Tf-KD-reg's release softens the hand-made distribution v (a on y, (1-a)/(C-1) elsewhere) as softmax(v / T)."""
    logits, _, targets = batch
    c, a, t, alpha = logits.shape[1], 0.9, 20.0, 0.5
    distiller = build_distiller(
        "tfkd-reg", nn.Identity(), num_classes=c, params={"alpha": alpha, "temperature": t, "own_probability": a}
    )
    x = torch.tensor(logits, dtype=torch.float32)
    _, parts = distiller.forward_train(x, torch.tensor(targets), 1)
    v = np.full((c, c), (1 - a) / (c - 1))
    np.fill_diagonal(v, a)
    q_ref = np.stack([np.exp(np_log_softmax(v[y] / t)) for y in targets])
    assert float(parts["ce"] + parts["kd"]) == pytest.approx(ref_kd(logits, targets, q_ref, alpha, t), rel=1e-5)
    assert torch.allclose(virtual_teacher_table(c, a).sum(1), torch.ones(c, dtype=torch.float32))


def test_reffakd_and_dkd_aesl_read_the_soft_label_row_as_stored(batch) -> None:
    logits, _, targets = batch
    c = logits.shape[1]
    table = torch.softmax(torch.randn(c, c, generator=torch.Generator().manual_seed(0)), 1)
    soft = SoftLabels(table, tuple(str(i) for i in range(c)))
    x, y = torch.tensor(logits, dtype=torch.float32), torch.tensor(targets)
    _, kd = build_distiller(
        "reffakd", nn.Identity(), num_classes=c, soft_labels=soft, params={"alpha": 0.3, "temperature": 5.0}
    ).forward_train(x, y, 1)
    assert float(kd["ce"] + kd["kd"]) == pytest.approx(
        ref_kd(logits, targets, table.numpy()[targets], 0.3, 5.0), rel=1e-5
    )
    dkd = build_distiller(
        "dkd-aesl",
        nn.Identity(),
        num_classes=c,
        soft_labels=soft,
        total_epochs=10,
        params={"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 2},
    )
    _, parts = dkd.forward_train(x, y, 1)  # epoch 1 of a 2-epoch warm-up: KD terms at half weight
    ref_t, ref_n = ref_dkd(logits, targets, table.numpy()[targets].astype(np.float64), 4.0)
    assert float(parts["tckd"]) == pytest.approx(0.5 * ref_t, rel=1e-4)
    assert float(parts["nckd"]) == pytest.approx(0.5 * 8.0 * ref_n, rel=1e-4)


def test_teacher_stays_frozen_in_eval_mode() -> None:
    teacher = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = nn.Linear(4, 3)
    distiller = build_distiller(
        "kd", student, num_classes=3, teacher=TeacherNetwork(teacher, 3, forward_flops_per_image=0)
    )
    distiller.train()
    assert not teacher.training and student.training
    _, losses = distiller.forward_train(torch.randn(16, 4), torch.randint(0, 3, (16,)), 1)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN running stats untouched


def test_teacher_input_is_renormalised_to_its_own_statistics() -> None:
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 2)

    raw = torch.rand(3, 1, 2, 2)
    student_x = (raw - 0.3) / 0.2
    src = TeacherNetwork(
        Probe(), 2, forward_flops_per_image=0, input_stats=((0.3,), (0.2,)), teacher_stats=((0.5,), (0.25,))
    )
    src.probabilities(student_x, torch.zeros(3, dtype=torch.long), 1.0)
    torch.testing.assert_close(seen[0], (raw - 0.5) / 0.25)


def test_every_method_is_registered_with_checked_defaults() -> None:
    assert set(DISTILLERS) == {
        "ce", "ls", "tfkd-reg", "tfkd-self", "kd", "dkd", "dkd-aesl", "reffakd", "ols", "ps-kd", "cs-kd",
        "reffakd-instance", "reffakd-semi", "reffakd-instance-semi", "dkd-aesl-semi",
        "aesl-similarity", "aesl-shuffled", "aesl-uniform",
        "teacher-table-similarity", "teacher-table-shuffled", "teacher-table-uniform",
    }  # fmt: skip
    for name in DISTILLERS:
        method_params(name)  # defaults pass their own checks


@pytest.mark.parametrize(
    "method,params,match",
    [
        ("kd", {"alpha": 1.5}, "alpha 1.5 is out of range"),
        ("reffakd", {"temperature": 0.0}, "temperature 0.0 is out of range"),
        ("ls", {"epsilon": 1.0}, "epsilon 1.0 is out of range"),
        ("tfkd-reg", {"own_probability": 1.0}, "own_probability 1.0 is out of range"),
        ("dkd", {"beta": -1.0}, "DKD beta -1.0 is out of range"),
        ("dkd", {"warmup_epochs": -2}, "warmup_epochs -2 is out of range"),
        ("ce", {"alpha": 0.5}, "method ce takes no parameter 'alpha'"),
        ("kd", {"beta": 2.0}, "method kd takes no parameter 'beta'"),
        ("nope", {}, "unknown method 'nope'"),
    ],
)
def test_bad_method_parameters_are_one_clear_error(method: str, params: dict, match: str) -> None:
    with pytest.raises(ReffAKDError, match=match):
        method_params(method, params)


@pytest.mark.parametrize(
    "method,needs",
    [
        ("kd", "teacher"),
        ("dkd", "teacher"),
        ("tfkd-self", "teacher"),
        ("reffakd", "soft labels"),
        ("dkd-aesl", "soft labels"),
    ],
)
def test_methods_refuse_to_run_without_their_soft_targets(method: str, needs: str) -> None:
    with pytest.raises(ReffAKDError, match=f"method {method} needs (a )?{needs}"):
        build_distiller(method, nn.Linear(2, 3), num_classes=3)
