"""class_similarity against the notebooks' brute-force pairwise average; calibration; diagnostics."""

from __future__ import annotations

import itertools

import pytest
import torch

from reffakd import ReffAKDError
from reffakd.softlabels import (
    Calibration,
    SimilarityAccumulator,
    class_similarity,
    similarity_to_soft_labels,
    soft_label_diagnostics,
    temperature_for_own_probability,
)
from reffakd.softlabels.similarity import sample_per_class


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity with the convention that a zero vector has cosine 0 with anything."""
    na, nb = float(a.norm()), float(b.norm())
    return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)


def brute_force(emb: torch.Tensor, labels: torch.Tensor, c: int) -> torch.Tensor:
    """The notebooks' definition, pair by pair: cross pairs off the diagonal, distinct pairs on it."""
    e = emb.double()
    out = torch.zeros(c, c, dtype=torch.float64)
    members = [(labels == k).nonzero(as_tuple=True)[0].tolist() for k in range(c)]
    for i in range(c):
        for j in range(c):
            if i == j:
                pairs = list(itertools.combinations(members[i], 2))
            else:
                pairs = list(itertools.product(members[i], members[j]))
            out[i, j] = sum(cosine(e[a], e[b]) for a, b in pairs) / len(pairs)
    return out


def random_embeddings(seed: int = 0, n: int = 60, d: int = 12, c: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.relu(torch.randn(n, d, generator=g))  # non-negative, like the ReLU encoder
    labels = torch.arange(n) % c
    emb[5] = 0.0  # an all-zero embedding (class 1)
    emb[10] = 0.0  # another one (class 2)
    return emb, labels


def test_full_mode_equals_brute_force_with_zero_embeddings() -> None:
    emb, labels = random_embeddings()
    fast = class_similarity(emb, labels, 4)
    torch.testing.assert_close(fast, brute_force(emb, labels, 4), rtol=0, atol=1e-5)


def test_unbalanced_classes_equal_brute_force() -> None:
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(37, 9, generator=g)  # signed embeddings too
    labels = torch.cat([torch.zeros(2), torch.ones(20), torch.full((15,), 2)]).long()
    torch.testing.assert_close(class_similarity(emb, labels, 3), brute_force(emb, labels, 3), rtol=0, atol=1e-5)


def test_sampled_mode_equals_brute_force_on_the_same_sample() -> None:
    emb, labels = random_embeddings(seed=1, n=80)
    fast = class_similarity(emb, labels, 4, samples_per_class=6, generator=torch.Generator().manual_seed(42))
    keep = sample_per_class(labels, 4, 6, torch.Generator().manual_seed(42))
    assert keep.numel() == 24 and all(int((labels[keep] == k).sum()) == 6 for k in range(4))
    torch.testing.assert_close(fast, brute_force(emb[keep], labels[keep], 4), rtol=0, atol=1e-5)
    again = class_similarity(emb, labels, 4, samples_per_class=6, generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(fast, again, rtol=0, atol=0)
    other = class_similarity(emb, labels, 4, samples_per_class=6, generator=torch.Generator().manual_seed(43))
    assert not torch.equal(fast, other)


def uneven_batches(n: int, seed: int) -> list[tuple[int, int]]:
    """[lo, hi) bounds of batches of random sizes 1..9 covering 0..n."""
    g = torch.Generator().manual_seed(seed)
    bounds, lo = [], 0
    while lo < n:
        hi = min(n, lo + int(torch.randint(1, 10, (1,), generator=g)))
        bounds.append((lo, hi))
        lo = hi
    return bounds


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_accumulator_equals_brute_force_from_uneven_batches_and_two_ranks(dtype: torch.dtype) -> None:
    """Streamed in uneven batches, or split over two simulated ranks then merged: the pairwise definition."""
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(90, 16, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, 5, (90,), generator=g)
    labels[:10] = torch.arange(10) % 5  # every class at least twice
    emb[[3, 17, 40]] = 0.0  # all-zero embeddings: cosine 0 with everything
    expected = brute_force(emb, labels, 5)

    streamed = SimilarityAccumulator(5, 16)
    for lo, hi in uneven_batches(90, seed=1):
        streamed.update(emb[lo:hi], labels[lo:hi])
    torch.testing.assert_close(streamed.similarity(), expected, rtol=0, atol=1e-6)

    ranks = [SimilarityAccumulator(5, 16) for _ in range(2)]
    for k, (lo, hi) in enumerate(uneven_batches(90, seed=2)):  # rank k % 2 takes every other batch
        ranks[k % 2].update(emb[lo:hi], labels[lo:hi])
    merged = ranks[0].merge(ranks[1])
    torch.testing.assert_close(merged.similarity(), expected, rtol=0, atol=1e-6)
    assert merged.counts.tolist() == torch.bincount(labels, minlength=5).tolist()
    torch.testing.assert_close(class_similarity(emb, labels, 5), expected, rtol=0, atol=1e-6)


def test_float32_batches_of_512_match_float64_sums() -> None:
    """Each batch is summed per class in float32 before the float64 sum: full-size batches of ReLU features
    (cosines near 1, the hard case for rounding) still give the float64 matrix to 1e-6."""
    g = torch.Generator().manual_seed(7)
    emb = torch.relu(torch.randn(4096, 96, generator=g) + 2.0)
    labels = torch.randint(0, 10, (4096,), generator=g)
    exact, fast = SimilarityAccumulator(10, 96), SimilarityAccumulator(10, 96)
    for lo in range(0, 4096, 512):
        exact.update(emb[lo : lo + 512].double(), labels[lo : lo + 512])
        fast.update(emb[lo : lo + 512], labels[lo : lo + 512])
    assert exact.similarity().min() > 0.8
    torch.testing.assert_close(fast.similarity(), exact.similarity(), rtol=0, atol=1e-6)
    assert emb.dtype == torch.float32 and bool((emb >= 0).all())  # the input was not changed in place


def test_accumulator_class_sums_and_means_are_of_unit_vectors() -> None:
    """What a second pass over the images takes from the accumulator: sums and means of unit embeddings."""
    emb, labels = random_embeddings(seed=3)
    acc = SimilarityAccumulator(4, emb.shape[1])
    acc.update(emb, labels)
    norms = emb.double().norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, emb.double() / norms, torch.zeros_like(norms))
    for k in range(4):
        members = unit[labels == k]
        torch.testing.assert_close(acc.class_sums[k], members.sum(0))
        torch.testing.assert_close(acc.class_means()[k], members.mean(0))
        assert int(acc.counts[k]) == members.shape[0]


def test_accumulator_refuses_bad_input() -> None:
    acc = SimilarityAccumulator(3, 4)
    with pytest.raises(ReffAKDError, match="labels must lie in 0..2, got values 0..3"):
        acc.update(torch.rand(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ReffAKDError, match="dimension 5 but the accumulator takes 4"):
        acc.update(torch.rand(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ReffAKDError, match="cannot merge a 2-class"):
        acc.merge(SimilarityAccumulator(2, 4))
    acc.update(torch.rand(4, 4), torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ReffAKDError, match="class 1 has 1 embedding"):
        acc.similarity()


def test_symmetric_and_bounded() -> None:
    emb, labels = random_embeddings(seed=2)
    s = class_similarity(emb, labels, 4)
    torch.testing.assert_close(s, s.T)
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0 + 1e-12


@pytest.mark.parametrize("counts", [(1, 5, 5), (5, 0, 5)])
def test_class_with_fewer_than_two_samples_is_an_error(counts: tuple[int, ...]) -> None:
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)]).long()
    with pytest.raises(ReffAKDError, match="at least 2"):
        class_similarity(torch.rand(len(labels), 4), labels, 3)


def test_too_many_samples_per_class_is_an_error() -> None:
    emb, labels = random_embeddings()
    with pytest.raises(ReffAKDError, match="samples_per_class=100"):
        class_similarity(emb, labels, 4, samples_per_class=100)


def test_soft_labels_are_the_row_softmax() -> None:
    s = torch.tensor([[0.9, 0.5], [0.2, 0.8]], dtype=torch.float64)
    p = similarity_to_soft_labels(s, diagonal_boost=0.1, temperature=0.5)
    # row 0: softmax((1.0, 0.5) / 0.5) = softmax(2, 1)
    e = torch.tensor([2.0, 1.0]).exp()
    torch.testing.assert_close(p[0], (e / e.sum()).double())
    torch.testing.assert_close(p.sum(1), torch.ones(2, dtype=torch.float64))


def test_paper_constants_give_nearly_uniform_rows() -> None:
    """Cosines in [0, 1] with tau = 1 and boost 0.008: own-class probability barely above 1/C."""
    s = torch.full((10, 10), 0.9, dtype=torch.float64)
    s.fill_diagonal_(0.95)
    p = Calibration.preset("paper", "fashion-mnist").apply(s)[0]
    assert 0.1 < float(p.diagonal().mean()) < 0.12


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_temperature_hits_the_target_own_probability(target: float) -> None:
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(200) % 5
    centres = torch.randn(5, 30, generator=g)
    emb = torch.relu(centres[labels] + 0.8 * torch.randn(200, 30, generator=g))  # classes with structure
    s = class_similarity(emb, labels, 5)
    tau = temperature_for_own_probability(s, 0.01, target)
    p = similarity_to_soft_labels(s, 0.01, tau)
    assert float(p.diagonal().mean()) == pytest.approx(target, abs=1e-4)


def test_unreachable_target_is_an_error() -> None:
    s = torch.tensor([[0.1, 0.9], [0.9, 0.1]], dtype=torch.float64)  # every class more like the other
    with pytest.raises(ReffAKDError, match="unreachable"):
        temperature_for_own_probability(s, 0.0, 0.6)


def test_diagnostics() -> None:
    s = torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, 0.3], [0.1, 0.3, 1.0]], dtype=torch.float64)
    p = similarity_to_soft_labels(s, 0.0, 0.2)
    d = soft_label_diagnostics(p, s, ("a", "b", "c"), nearest=3)
    assert d["rows_with_diagonal_argmax"] == 3
    assert d["per_class"][0]["nearest"] == ["b", "c"]  # at most C - 1 neighbours
    assert d["per_class"][2]["nearest"][0] == "b"
    entropy0 = float(-(p[0] * p[0].log()).sum())
    assert d["per_class"][0]["entropy_nats"] == pytest.approx(entropy0)
    assert d["mean_own_probability"] == pytest.approx(float(p.diagonal().mean()))


def test_equalized_own_probability_keeps_the_non_target_proportions() -> None:
    s = torch.tensor([[0.5, 0.9, 0.1], [0.9, 1.0, 0.3], [0.1, 0.3, 1.0]], dtype=torch.float64)  # class 0 is more like 1
    cal = Calibration(0.0, target_own_probability=0.6, equalize_own=True)
    p, tau = cal.apply(s)
    torch.testing.assert_close(p.diagonal(), torch.full((3,), 0.6, dtype=torch.float64))
    torch.testing.assert_close(p.sum(1), torch.ones(3, dtype=torch.float64))
    plain = similarity_to_soft_labels(s, 0.0, tau)
    for i in range(3):
        others = [j for j in range(3) if j != i]
        torch.testing.assert_close(p[i, others] / p[i, others].sum(), plain[i, others] / plain[i, others].sum())
    assert int((p.argmax(1) == torch.arange(3)).sum()) == 3  # no row inverted any more


def test_equalize_needs_a_target() -> None:
    with pytest.raises(ReffAKDError, match="target own-class probability"):
        Calibration(0.0, temperature=1.0, equalize_own=True).validate()
