"""Class similarity from embeddings, and soft labels from class similarity.

The authors average the cosine similarity over every pair of 40 sampled images per class with a
Python double loop (about 8 M pairs on CIFAR-100). The same means follow exactly from per-class sums
of unit vectors, in one O(N * D) pass, so every training image can be used.
"""

from __future__ import annotations

import math

import torch

from ..errors import ReffAKDError


def sample_per_class(labels: torch.Tensor, num_classes: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of ``k`` images per class drawn without replacement (seeded through ``generator``)."""
    picked = []
    for c in range(num_classes):
        idx = (labels == c).nonzero(as_tuple=True)[0]
        if idx.numel() < k:
            raise ReffAKDError(
                f"samples_per_class={k} but class {c} has only {idx.numel()} images; use at most {idx.numel()}"
            )
        picked.append(idx[torch.randperm(idx.numel(), generator=generator)[:k]])
    return torch.cat(picked)


def class_similarity(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    samples_per_class: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean pairwise cosine similarity between classes, (C, C), float64 accumulation.

    Off-diagonal (i, j): the mean over all n_i * n_j cross pairs. Diagonal (i, i): the mean over the
    n_i * (n_i - 1) / 2 distinct within-class pairs, self-pairs excluded. An all-zero embedding (a
    ReLU encoder can produce one) has cosine 0 with everything, as in the pairwise definition.
    ``samples_per_class=k`` reproduces the notebooks' seeded sample of k images per class.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ReffAKDError(
            f"embeddings must be (N, D) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ReffAKDError(
            f"labels must lie in 0..{num_classes - 1}, got values {int(labels.min())}..{int(labels.max())}"
        )
    if samples_per_class is not None:
        if samples_per_class < 2:
            raise ReffAKDError(f"samples_per_class must be at least 2, got {samples_per_class}")
        keep = sample_per_class(labels, num_classes, samples_per_class, generator)
        embeddings, labels = embeddings[keep], labels[keep]
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    too_few = (counts < 2).nonzero(as_tuple=True)[0]
    if too_few.numel():
        c = int(too_few[0])
        raise ReffAKDError(
            f"class {c} has {int(counts[c])} embedding(s); every class needs at least 2 for a within-class similarity"
        )
    e = embeddings.to(torch.float64)
    norms = e.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, e / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(e))
    sums = torch.zeros((num_classes, e.shape[1]), dtype=torch.float64, device=e.device).index_add_(0, labels, unit)
    self_dots = torch.zeros(num_classes, dtype=torch.float64, device=e.device).index_add_(
        0, labels, (unit * unit).sum(1)
    )
    gram = sums @ sums.T
    counts = counts.to(e.device)
    sim = gram / (counts[:, None] * counts[None, :])
    diag = (gram.diagonal() - self_dots) / (counts * (counts - 1))
    sim.diagonal().copy_(diag)
    return sim


def similarity_to_soft_labels(similarity: torch.Tensor, diagonal_boost: float, temperature: float) -> torch.Tensor:
    """Row softmax of (S + boost * I) / temperature: row c is the soft label of class c."""
    if not math.isfinite(diagonal_boost) or diagonal_boost < 0:
        raise ReffAKDError(f"diagonal boost {diagonal_boost} is out of range: it must be a finite number >= 0")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ReffAKDError(f"soft-label temperature {temperature} is out of range: it must be a finite number > 0")
    s = similarity.to(torch.float64) + diagonal_boost * torch.eye(
        similarity.shape[0], dtype=torch.float64, device=similarity.device
    )
    return torch.softmax(s / temperature, dim=1)


def mean_own_probability(soft_labels: torch.Tensor) -> float:
    return float(soft_labels.diagonal().mean())


def temperature_for_own_probability(
    similarity: torch.Tensor, diagonal_boost: float, target: float, *, tol: float = 1e-6
) -> float:
    """The softmax temperature whose soft labels give each class ``target`` own-class probability on average.

    Calibrating on the own-class probability rather than on tau directly makes one default carry
    across datasets whose similarity scales and class counts differ. Solved by bisection on log tau.
    """
    c = similarity.shape[0]
    if not (1.0 / c < target < 1.0):
        raise ReffAKDError(
            f"target own-class probability {target} is out of range: "
            f"it must lie strictly between 1/C = {1.0 / c:.4g} and 1"
        )
    own = lambda tau: mean_own_probability(similarity_to_soft_labels(similarity, diagonal_boost, tau))  # noqa: E731
    lo, hi = math.log(1e-6), math.log(1e3)
    if own(math.exp(lo)) < target + 1e-3:  # at the bound the rows would be one-hot: degenerate, refuse
        raise ReffAKDError(
            f"target own-class probability {target} is unreachable: these similarities give at most "
            f"{own(math.exp(lo)):.4f} (a class is more similar to another class than to itself); "
            "lower the target or raise the diagonal boost"
        )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if own(math.exp(mid)) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return math.exp(0.5 * (lo + hi))
