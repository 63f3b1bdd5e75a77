"""Class similarity from embeddings, and soft labels from class similarity.

The authors average the cosine similarity over every pair of 40 sampled images per class with a
Python double loop (about 8 M pairs on CIFAR-100). The same means follow exactly from per-class sums
of unit vectors, in one O(N * D) pass, so every training image can be used.
"""

from __future__ import annotations

import math

import torch

from ..engine import distributed
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


class SimilarityAccumulator:
    """Class similarity from a stream of embedding batches: per-class sums of unit vectors, mergeable.

    The mean pairwise cosine between classes needs only, per class, the sum of its unit vectors, the
    sum of their squared norms (1, or 0 for an all-zero embedding) and the count: C x D + 2C numbers,
    whatever N is. So the embeddings are never held together: each batch is normalised and summed per class
    in float32 (float64 input: in float64), and those per-batch sums are added in float64, so rounding is
    bounded by one batch whatever N is, at a third of the cost of a float64 copy of every batch (the
    accumulator sits on the embedding pass's hot path). Accumulators of different shards add up
    (``merge``, ``all_reduce``), and the result is the pairwise definition of ``class_similarity``.

    ``class_sums`` and ``counts`` (and ``class_means``) are public: a second streaming pass that compares
    each image with the class means (per-image soft labels) takes them from here.
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1 or dim < 1:
            raise ReffAKDError(
                f"a similarity accumulator needs num_classes >= 1 and dim >= 1, got {num_classes}, {dim}"
            )
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.class_sums = torch.zeros((num_classes, dim), dtype=torch.float64, device=device)
        self.self_dots = torch.zeros(num_classes, dtype=torch.float64, device=device)  # sum of |unit|^2 per class
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.class_sums.device

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: ``embeddings`` (B, D) in any floating dtype (left unchanged), ``labels`` (B,) in 0..C-1."""
        if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
            raise ReffAKDError(
                f"embeddings must be (N, D) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
            )
        if embeddings.shape[1] != self.dim:
            raise ReffAKDError(f"embeddings have dimension {embeddings.shape[1]} but the accumulator takes {self.dim}")
        if not labels.numel():
            return
        labels = labels.to(self.device, torch.long)
        lo, hi = int(labels.min()), int(labels.max())  # one host read per batch, for a one-line error
        if lo < 0 or hi >= self.num_classes:
            raise ReffAKDError(f"labels must lie in 0..{self.num_classes - 1}, got values {lo}..{hi}")
        e = embeddings.to(self.device)
        if e.dtype != torch.float64:  # half precision would round the norms and sums; float32 is enough per batch
            e = e.float()
        norms = torch.linalg.vector_norm(e, dim=1, keepdim=True)
        scale = torch.where(norms > 0, norms.reciprocal(), 0.0)  # 0: a zero embedding stays 0
        present, rows = torch.unique(labels, return_inverse=True)  # at most B rows, however many classes there are
        batch_sums = torch.zeros((present.numel(), self.dim), dtype=e.dtype, device=e.device)
        self.class_sums.index_add_(0, present, batch_sums.index_add_(0, rows, e * scale).to(torch.float64))
        self.self_dots.index_add_(0, labels, (norms * scale).square().squeeze(1).to(torch.float64))
        self.counts += torch.bincount(labels, minlength=self.num_classes)

    def merge(self, other: SimilarityAccumulator) -> SimilarityAccumulator:
        """Add another accumulator's sums (another shard of the same data); returns self."""
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ReffAKDError(
                f"cannot merge a {other.num_classes}-class, {other.dim}-dim accumulator into a "
                f"{self.num_classes}-class, {self.dim}-dim one"
            )
        self.class_sums += other.class_sums.to(self.device)
        self.self_dots += other.self_dots.to(self.device)
        self.counts += other.counts.to(self.device)
        return self

    def all_reduce(self) -> SimilarityAccumulator:
        """Under torchrun: every rank's sums added on every rank (a no-op in one process); returns self."""
        distributed.all_reduce_tensors([self.class_sums, self.self_dots, self.counts])
        return self

    def class_means(self) -> torch.Tensor:
        """(C, D) float64: each class's mean unit embedding (zero for a class with no images)."""
        return self.class_sums / self.counts.clamp_min(1).to(torch.float64)[:, None]

    def similarity(self) -> torch.Tensor:
        """The (C, C) float64 matrix: cross-class means over all pairs, within-class means over distinct pairs."""
        counts = self.counts.to(torch.float64)
        too_few = (self.counts < 2).nonzero(as_tuple=True)[0]
        if too_few.numel():
            c = int(too_few[0])
            raise ReffAKDError(
                f"class {c} has {int(self.counts[c])} embedding(s); "
                "every class needs at least 2 for a within-class similarity"
            )
        gram = self.class_sums @ self.class_sums.T
        sim = gram / (counts[:, None] * counts[None, :])
        sim.diagonal().copy_((gram.diagonal() - self.self_dots) / (counts * (counts - 1)))
        return sim


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
    ``samples_per_class=k`` reproduces the notebooks' seeded sample of k images per class. Embeddings
    held in memory, one batch of ``SimilarityAccumulator``; a stream of batches goes to it directly.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ReffAKDError(
            f"embeddings must be (N, D) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    labels = labels.long()
    if samples_per_class is not None:
        keep = checked_sample(labels, num_classes, samples_per_class, generator)
        embeddings, labels = embeddings[keep], labels[keep]
    acc = SimilarityAccumulator(num_classes, embeddings.shape[1], embeddings.device)
    acc.update(embeddings, labels)
    return acc.similarity()


def checked_sample(
    labels: torch.Tensor, num_classes: int, samples_per_class: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``sample_per_class`` after checking k >= 2 and the labels' range (one-line errors)."""
    if samples_per_class < 2:
        raise ReffAKDError(f"samples_per_class must be at least 2, got {samples_per_class}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ReffAKDError(
            f"labels must lie in 0..{num_classes - 1}, got values {int(labels.min())}..{int(labels.max())}"
        )
    return sample_per_class(labels, num_classes, samples_per_class, generator)


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
