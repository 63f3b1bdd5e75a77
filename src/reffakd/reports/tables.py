"""Text tables for the terminal and for ``summary.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_flops(flops: float | None) -> str:
    if flops is None:
        return "-"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops:.0f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)])


def summary_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per run summary: method, selected epoch, validation and test top-1, time, FLOPs."""
    headers = [
        "run",
        "method",
        "best epoch",
        "val top-1",
        "test top-1 (best val)",
        "test top-1 (last)",
        "wall time",
        "training FLOPs",
        "soft-target FLOPs",
    ]
    rows = []
    for r in runs:
        rows.append(
            [
                r["name"],
                r["method"],
                r["best_epoch"],
                f"{r['best_val_top1']:.2f}",
                f"{r['test_best']['top1']:.2f}",
                f"{r['test_last']['top1']:.2f}",
                f"{r['cost']['student']['seconds']:.0f} s",
                format_flops(r["cost"]["student"]["flops"]),
                format_flops(r["cost"]["soft_targets"]["flops"]) if r["cost"].get("soft_targets") else "-",
            ]
        )
    return markdown_table(headers, rows)
