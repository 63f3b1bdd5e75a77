"""Soft-label generation time, and class-sum similarity against the notebooks' pairwise loop.

Embeds the 55,000 training images of real Fashion-MNIST with the autoencoder, computes the class
similarity from class sums over all of them, and, in the same run, the notebooks' Python double loop
over every pair of 40 sampled images per class; checks both give the same matrix on that sample.

    python benchmarks/similarity_speed.py --out benchmarks/results/similarity_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reffakd.data import DataConfig, TensorBatches, load_splits
from reffakd.models import ConvAutoencoder
from reffakd.softlabels import class_similarity, embed
from reffakd.softlabels.similarity import sample_per_class


def notebook_pairwise(emb: torch.Tensor, labels: torch.Tensor, c: int) -> torch.Tensor:
    """The notebooks' way: a Python loop over class pairs and image pairs, one cosine at a time."""
    members = [emb[labels == k] for k in range(c)]
    out = torch.zeros(c, c, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            total, count = 0.0, 0
            for a in range(len(members[i])):
                for b in range(len(members[j])):
                    if i == j and b <= a:
                        continue  # distinct within-class pairs only
                    total += float(F.cosine_similarity(members[i][a : a + 1], members[j][b : b + 1]))
                    count += 1
            out[i, j] = total / count
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples-per-class", type=int, default=40)
    args = ap.parse_args()
    torch.manual_seed(0)
    splits = load_splits(DataConfig())
    ae = ConvAutoencoder(1, (32, 32))  # speed does not depend on the weights
    (emb, labels), t_embed = timed(lambda: embed(ae, TensorBatches(splits.train, 512)))
    full, t_full = timed(lambda: class_similarity(emb, labels, 10))
    keep = sample_per_class(labels, 10, args.samples_per_class, torch.Generator().manual_seed(0))
    sampled, t_sampled = timed(lambda: class_similarity(emb[keep], labels[keep], 10))
    loop, t_loop = timed(lambda: notebook_pairwise(emb[keep], labels[keep], 10))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "train_images": len(labels),
        "embedding_dim": emb.shape[1],
        "embed_seconds": t_embed,
        "class_sum_all_images_seconds": t_full,
        "class_sum_40_per_class_seconds": t_sampled,
        "notebook_loop_40_per_class_seconds": t_loop,
        "notebook_loop_pairs": 10 * 9 * args.samples_per_class**2
        + 10 * args.samples_per_class * (args.samples_per_class - 1) // 2,
        "max_abs_difference_loop_vs_class_sum": float((loop - sampled).abs().max()),
        "speedup_all_images_vs_loop": t_loop / t_full,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
