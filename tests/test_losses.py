"""Golden-value tests of the ReffAKD loss against independent computations from its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reffakd import ReffAKDError, ReffAKDLoss, SoftLabels


def reference_loss(logits: np.ndarray, targets: np.ndarray, q_table: np.ndarray, alpha: float, t: float) -> float:
    """(1 - alpha) * CE + alpha * T^2 * mean_n sum_c q log(q / p_T), in float64 NumPy, term by term."""
    total_ce = total_kl = 0.0
    for z, y in zip(logits, targets):
        log_p = z - np.log(np.exp(z - z.max()).sum()) - z.max()
        total_ce += -log_p[y]
        zt = z / t
        log_pt = zt - np.log(np.exp(zt - zt.max()).sum()) - zt.max()
        q = q_table[y]
        total_kl += sum(qc * (math.log(qc) - lp) for qc, lp in zip(q, log_pt) if qc > 0)
    n = len(targets)
    return (1 - alpha) * total_ce / n + alpha * t * t * total_kl / n


def test_hand_computed_two_class_value() -> None:
    # One sample, two classes, z = (0, 0): CE = log 2. q = (0.75, 0.25), T = 2: p_T = (0.5, 0.5),
    # KL = 0.75 log 1.5 + 0.25 log 0.5. alpha = 0.5: L = 0.5 log 2 + 0.5 * 4 * KL.
    q = torch.tensor([[0.75, 0.25], [0.25, 0.75]], dtype=torch.float64)
    loss = ReffAKDLoss(q, alpha=0.5, temperature=2.0)(torch.zeros(1, 2), torch.tensor([0]))
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(loss) == pytest.approx(0.5 * math.log(2) + 2.0 * kl, abs=1e-6)
    assert float(loss) == pytest.approx(0.6081977, abs=1e-6)  # the literal, pinned


@pytest.mark.parametrize("alpha,t", [(0.0, 1.0), (0.3, 1.0), (0.5, 4.0), (0.9, 20.0), (1.0, 5.0)])
def test_matches_numpy_reference(alpha: float, t: float) -> None:
    rng = np.random.default_rng(7)
    c, n = 7, 13
    q = rng.dirichlet(np.ones(c), size=c)
    q[2, 3] = 0.0  # a zero target entry: 0 * log 0 = 0
    q[2] /= q[2].sum()
    logits = rng.normal(scale=3.0, size=(n, c))
    targets = rng.integers(0, c, size=n)
    targets[0] = 2
    loss = ReffAKDLoss(torch.tensor(q), alpha=alpha, temperature=t)(
        torch.tensor(logits, dtype=torch.float32), torch.tensor(targets)
    )
    assert float(loss) == pytest.approx(reference_loss(logits, targets, q, alpha, t), rel=1e-5, abs=1e-5)


def test_components_are_the_weighted_terms() -> None:
    rng = np.random.default_rng(1)
    q = torch.tensor(rng.dirichlet(np.ones(5), size=5))
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    crit = ReffAKDLoss(q, alpha=0.25, temperature=3.0)
    parts = crit.components(logits, targets)
    ce = torch.nn.functional.cross_entropy(logits, targets)
    assert float(parts["ce"]) == pytest.approx(0.75 * float(ce), rel=1e-6)
    assert float(parts["ce"] + parts["kd"]) == pytest.approx(float(crit(logits, targets)), rel=1e-6)


def test_soft_cross_entropy_has_the_same_gradient() -> None:
    """CE with the soft target differs from the KL only by the entropy of q: same gradient."""
    q = torch.softmax(torch.randn(4, 4, dtype=torch.float64), 1)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 4, (6,))
    t = 3.0
    ReffAKDLoss(q, alpha=1.0, temperature=t)(logits, targets).backward()
    g_kl = logits.grad.clone()
    logits.grad = None
    soft_ce = -(q[targets] * torch.log_softmax(logits / t, 1)).sum(1).mean() * t * t
    soft_ce.backward()
    torch.testing.assert_close(g_kl.float(), logits.grad.float(), rtol=1e-5, atol=1e-6)


def test_accepts_a_soft_labels_artifact_and_moves_with_the_module() -> None:
    soft = SoftLabels(torch.full((3, 3), 1 / 3), ("a", "b", "c"))
    crit = ReffAKDLoss(soft, alpha=0.5, temperature=1.0)
    assert "soft_labels" in dict(crit.named_buffers())
    # Uniform targets and equal logits: KL = 0, CE = log 3.
    assert float(crit(torch.zeros(2, 3), torch.tensor([0, 2]))) == pytest.approx(0.5 * math.log(3), abs=1e-6)


@pytest.mark.parametrize(
    "alpha,t", [(-0.1, 1.0), (1.01, 1.0), (0.5, 0.0), (0.5, -2.0), (float("nan"), 1.0), (0.5, float("inf"))]
)
def test_rejects_out_of_range_alpha_and_temperature(alpha: float, t: float) -> None:
    with pytest.raises(ReffAKDError, match="alpha|temperature"):
        ReffAKDLoss(torch.eye(3), alpha=alpha, temperature=t)


def test_rejects_logits_of_another_class_count() -> None:
    with pytest.raises(ReffAKDError, match="3 classes"):
        ReffAKDLoss(torch.eye(3), 0.5, 1.0)(torch.zeros(2, 4), torch.tensor([0, 1]))
