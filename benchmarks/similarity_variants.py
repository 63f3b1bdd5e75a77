"""What the accumulator adds to the embedding pass, against a variant that sums by one matrix product.

The real Fashion-MNIST training images embedded by an autoencoder (768 dimensions, batches of 512, one torch
thread), three passes interleaved over ``--repeats`` rounds: the embedding pass alone, feeding the shipped
``SimilarityAccumulator``, and feeding a variant whose per-class sums are one product of scaled one-hot rows with the
batch (no B x D temporary). Prints each one's share of the pass (best-of and median of the paired rounds) and the
largest difference between the two similarity matrices.

    python benchmarks/similarity_variants.py --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reffakd.data import DataConfig, TensorBatches, load_splits
from reffakd.models import ConvAutoencoder
from reffakd.softlabels import SimilarityAccumulator, embed_batches


class MatmulAccumulator(SimilarityAccumulator):
    """The variant: per-class sums of unit vectors as (U x B scaled one-hot) @ (B x D embeddings)."""

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(self.device, torch.long)
        e = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
        norms = torch.linalg.vector_norm(e, dim=1)
        scale = torch.where(norms > 0, norms.reciprocal(), 0.0)
        present, rows = torch.unique(labels, return_inverse=True)
        weights = torch.zeros((present.numel(), e.shape[0]), dtype=e.dtype)
        weights[rows, torch.arange(e.shape[0])] = scale
        self.class_sums.index_add_(0, present, (weights @ e).to(torch.float64))
        self.self_dots.index_add_(0, labels, (norms * scale).square().to(torch.float64))
        self.counts += torch.bincount(labels, minlength=self.num_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    splits = load_splits(DataConfig(), log=lambda line: None)
    ae = ConvAutoencoder(1, (32, 32))  # the time does not depend on the weights
    batches = TensorBatches(splits.train, 512)

    def one_pass(cls: type[SimilarityAccumulator] | None) -> float:
        start = time.perf_counter()
        acc = cls(10, ae.embedding_dim) if cls is not None else None
        for features, labels in embed_batches(ae, batches):
            if acc is not None:
                acc.update(features, labels)
        return time.perf_counter() - start

    variants = {"none": None, "shipped": SimilarityAccumulator, "matmul": MatmulAccumulator}
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, cls in variants.items():
            seconds[name].append(one_pass(cls))
    base = seconds["none"]
    for name in ("shipped", "matmul"):
        best = 100 * (min(seconds[name]) - min(base)) / min(base)
        median = statistics.median(100 * (b - a) / a for a, b in zip(base, seconds[name]))
        print(f"{name}: best-of {best:+.2f} %, median of paired rounds {median:+.2f} %")
    shipped, matmul = SimilarityAccumulator(10, ae.embedding_dim), MatmulAccumulator(10, ae.embedding_dim)
    for features, labels in embed_batches(ae, batches):
        shipped.update(features, labels)
        matmul.update(features, labels)
    print(
        "max abs difference of the similarity matrices:",
        float((shipped.similarity() - matmul.similarity()).abs().max()),
    )


if __name__ == "__main__":
    main()
