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


def cost_table(preset: str, cost: dict[str, Any]) -> str:
    """``reffakd cost``'s table (``cost.recipe_cost``): the stages and totals as Markdown, labelled as computed from
    FLOP counts."""
    shape = "x".join(map(str, cost["input_shape"]))
    lines = [
        f"Preset `{preset}`: {cost['dataset']} ({shape}), {cost['train_images']:,} training and "
        f"{cost['val_images']:,} validation images. Computed from the models' FLOP counts "
        "(matmuls and convolutions, 1 MAC = 2 FLOPs) x images x epochs; nothing was trained.",
        "",
        "| soft targets / stage | model | parameters | FLOPs per image | images | epochs | FLOPs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in cost["stages"]:  # ``cost.Stage``s
        params = f"{s.parameters:,}" if s.parameters else "-"
        lines.append(
            f"| {s.group}: {s.stage} | {s.model} | {params} | {s.flops_per_image:.3e} | {s.images:,} | "
            f"{s.epochs} | {s.flops:.3e} |"
        )
    for group, total in cost["totals"].items():
        lines.append(f"| **{group}, total** | | | | | | **{total:.3e}** |")
    lines += [
        "",
        f"The teacher's soft targets cost **{cost['teacher_over_reffakd']:,.1f}x** the FLOPs of ReffAKD's; a whole KD "
        f"run (teacher + student) costs {cost['kd_over_reffakd_run']:,.2f}x a whole ReffAKD run (soft labels + "
        "student).",
    ]
    return "\n".join(lines)
