"""What a soft-label matrix says: how peaked each row is and which classes it links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def soft_label_diagnostics(
    soft_labels: torch.Tensor, similarity: torch.Tensor, class_names: Sequence[str], nearest: int = 3
) -> dict[str, Any]:
    """Own-class probability and entropy per row, diagonal-argmax count, each class's nearest classes.

    Nearest classes come from the similarity matrix (off-diagonal), which is what the soft labels encode.
    """
    p = soft_labels.to(torch.float64)
    c = p.shape[0]
    own = p.diagonal()
    entropy = -(p * p.clamp_min(1e-300).log()).sum(1)
    off = similarity.to(torch.float64).clone()
    off.fill_diagonal_(float("-inf"))
    k = min(nearest, c - 1)
    near = off.topk(k, dim=1).indices if k > 0 else torch.empty((c, 0), dtype=torch.long)
    rows = []
    for i, name in enumerate(class_names):
        rows.append(
            {
                "class": name,
                "own_probability": float(own[i]),
                "entropy_nats": float(entropy[i]),
                "argmax": class_names[int(p[i].argmax())],
                "nearest": [class_names[int(j)] for j in near[i]],
                "nearest_similarity": [float(similarity[i, j]) for j in near[i]],
            }
        )
    return {
        "num_classes": c,
        "uniform_probability": 1.0 / c,
        "max_entropy_nats": float(torch.log(torch.tensor(float(c)))),
        "mean_own_probability": float(own.mean()),
        "min_own_probability": float(own.min()),
        "max_own_probability": float(own.max()),
        "mean_entropy_nats": float(entropy.mean()),
        "rows_with_diagonal_argmax": int((p.argmax(1) == torch.arange(c)).sum()),
        "per_class": rows,
    }


def format_diagnostics(diag: dict[str, Any]) -> str:
    """A compact text table for the terminal and the run log."""
    structure = diag.get("structure", "similarity")
    lines = [
        ("" if structure == "similarity" else f"structure: {structure} (a placebo control: not the similarities)\n")
        + f"soft labels: mean own-class probability {diag['mean_own_probability']:.4f} "
        f"(uniform {diag['uniform_probability']:.4f}), mean entropy {diag['mean_entropy_nats']:.3f} of max "
        f"{diag['max_entropy_nats']:.3f} nats, "
        f"diagonal argmax in {diag['rows_with_diagonal_argmax']}/{diag['num_classes']} rows",
        f"{'class':<16} {'own p':>7} {'entropy':>8}  nearest classes (cosine)",
    ]
    for row in diag["per_class"]:
        near = ", ".join(f"{n} ({s:.3f})" for n, s in zip(row["nearest"], row["nearest_similarity"]))
        lines.append(f"{row['class'][:16]:<16} {row['own_probability']:>7.4f} {row['entropy_nats']:>8.3f}  {near}")
    return "\n".join(lines)
