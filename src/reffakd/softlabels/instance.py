"""Per-image autoencoder soft labels (``reffakd-instance``): one target per training image, from class sums.

For image i of class y with unit embedding u_i (0 for an all-zero embedding), S_c the sum of the unit
embeddings of class c and n_c its count:

    s_i[c] = u_i . S_c / n_c                          for c != y   (mean cosine of i with class c)
    s_i[y] = u_i . (S_y - u_i) / (n_y - 1)            (its own class without itself)
    q_i    = softmax((s_i + boost * onehot(y)) / tau)

with the class-level AESL's diagonal boost and temperature tau. Averaged over the images of class a,
s_i[b] is exactly the class-level similarity S[a, b] (self-pairs excluded on the diagonal), so the
class-level calibration carries over. Only the class sums are needed beside each image, so the table is
one streaming pass over the images once the sums are known; it takes sums and embeddings as inputs and
leaves how they are accumulated to ``similarity``.
"""

from __future__ import annotations

import torch

from ..errors import ReffAKDError


def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Each row divided by its norm, in float64; an all-zero row stays 0 (cosine 0 with everything)."""
    e = embeddings.to(torch.float64)
    norms = e.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, e / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(e))


def instance_similarity(
    embeddings: torch.Tensor, labels: torch.Tensor, class_sums: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """s_i (B, C) for a batch of images (see the module docstring), from the class sums over the whole split."""
    labels = labels.long()
    if (counts[labels] < 2).any():
        c = int(labels[(counts[labels] < 2).nonzero()[0, 0]])
        raise ReffAKDError(
            f"class {c} has {int(counts[c])} image(s); a per-image soft label needs at least 2 per class"
        )
    unit = unit_rows(embeddings)
    sums = class_sums.to(unit.device)
    n = counts.to(unit.device)
    dots = unit @ sums.T  # u_i . S_c
    own = dots.gather(1, labels[:, None]).squeeze(1) - (unit * unit).sum(1)  # u_i . (S_y - u_i)
    sim = dots / n[None, :]
    sim.scatter_(1, labels[:, None], (own / (n[labels] - 1))[:, None])
    return sim


def instance_soft_labels(
    similarity: torch.Tensor, labels: torch.Tensor, diagonal_boost: float, temperature: float
) -> torch.Tensor:
    """q_i = softmax((s_i + boost * onehot(y_i)) / tau), row by row (float64)."""
    boosted = similarity.to(torch.float64) + diagonal_boost * torch.nn.functional.one_hot(
        labels.long(), similarity.shape[1]
    ).to(torch.float64)
    return torch.softmax(boosted / temperature, dim=1)
