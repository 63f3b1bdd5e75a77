"""A label-budget study's report: ``study.md`` (per budget, every method against the baseline) and ``study.png``
(test top-1 against labelled images per class, log scale, with 95 % intervals).

Everything is rebuilt from the budgets' comparison folders (their runs' ``summary.json``), as the comparison's own
report is, so a resumed study reports the same as one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import read_json, write_text_atomic
from .compare_report import aggregate, collect_runs, paired_to_baseline, representatives
from .plots import figure
from .stats import format_paired, student_t_quantile
from .tables import format_flops, markdown_table


def labels_per_class(folder: Path) -> float | None:
    """The labelled images per class of a budget's runs (the mean over classes for "all"), from a run summary."""
    for path in sorted((folder / "runs").glob("*/seed*/summary.json")):
        s = read_json(path, "run summary", "`reffakd compare` when a run finishes")
        budget = s.get("labelled")
        if budget is not None and "labels_per_class" in budget:
            return float(budget["labels_per_class"])
        if s.get("num_classes"):
            return s["train_images"] / s["num_classes"]
    return None


def interval_half_width(std: float, n: int) -> float:
    """Half the 95 % t interval of a mean over ``n`` seeds (0 with one seed: no interval)."""
    return student_t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else 0.0


def budget_rows(folder: Path, method_order: Sequence[str], baseline: str | None) -> list[dict[str, Any]]:
    """Per method (its representative variant) at one budget: accuracy, the paired difference, the setting, cost."""
    rows = collect_runs(folder)
    if not rows:
        return []
    agg = aggregate(rows, list(method_order))
    paired = {p["method"]: p for p in paired_to_baseline(agg, baseline)}
    return [{**a, "paired": paired.get(a["method"])} for a in representatives(agg)]


def write_study_report(
    out: Path, budgets: Sequence[tuple[Any, Path]], method_order: Sequence[str], baseline: str | None
) -> str:
    """``study.md`` and ``study.png`` across the budgets' folders; returns the Markdown."""
    per_budget = [(b, folder, budget_rows(folder, method_order, baseline)) for b, folder in budgets]
    text = [
        "# Where soft targets pay off: labelled budgets",
        "",
        "Per budget: test top-1 at the validation-selected epoch (mean ± std over seeds), the paired difference to "
        f"{baseline or 'the baseline'} with its 95 % t interval and wins/ties/losses, the last epoch's test top-1, "
        "the setting chosen by equal tuning (if the spec tunes), and the cost per run.",
    ]
    for budget, folder, rows in per_budget:
        x = labels_per_class(folder)
        count = f" ({x:,.0f} per class)" if x is not None and budget == "all" else ""
        text += ["", f"## {budget} labelled images per class{count}", ""]
        if not rows:
            text.append("No finished run yet.")
            continue
        table = [
            [
                a["method"],
                len(a["seeds"]),
                f"{a['test_top1_selected']:.2f} ± {a['test_top1_selected_std']:.2f}",
                format_paired(a["paired"]["test_top1_selected"]) if a["paired"] else "-",
                (lambda d: f"{d.wins}/{d.ties}/{d.losses}" if d else "-")(
                    a["paired"]["test_top1_selected"] if a["paired"] else None
                ),
                f"{a['test_top1_last']:.2f} ± {a['test_top1_last_std']:.2f}",
                a.get("tuned", "").replace(";", ", ") or "-",
                format_flops(a["soft_target_flops"]) if a["soft_target_flops"] else "0",
                format_flops(a["student_flops"]),
            ]
            for a in rows
        ]
        headers = ["method", "seeds", "test top-1 (selected)", f"Δ to {baseline}", "W/T/L", "test top-1 (last)",
                   "tuned setting", "soft-target FLOPs", "student FLOPs"]  # fmt: skip
        text.append(markdown_table(headers, table))
    md = "\n".join(text) + "\n"
    write_text_atomic(out / "study.md", md)
    points = [(labels_per_class(folder), rows) for _, folder, rows in per_budget]
    points = [(x, rows) for x, rows in points if x is not None and rows]
    if points:
        plot_study(points, out / "study.png", baseline)
    return md


@figure
def plot_study(points: list[tuple[float, list[dict[str, Any]]]], path: Path, baseline: str | None = None) -> None:
    """Left: test top-1 against labelled images per class (log x), one line per method, 95 % t intervals of the mean.
    Right: each method's paired difference to ``baseline`` (same seeds) with its 95 % t interval, the quantity that
    says whether a method beats the baseline (the seeds' shared variation cancels in it). Points are spread a little
    sideways so that the intervals stay readable; the ticks are the budgets."""
    from .plots import new_figure, save_png

    points = sorted(points, key=lambda p: p[0])
    methods = list(dict.fromkeys(a["base_method"] for _, rows in points for a in rows))
    with_paired = baseline is not None and any(a.get("paired") for _, rows in points for a in rows)
    fig = new_figure((14, 5.5) if with_paired else (8, 5.5))
    axes = fig.subplots(1, 2 if with_paired else 1, squeeze=False)[0]
    for k, method in enumerate(methods):
        style = dict(
            color=f"C{k % 10}", linestyle=("-", "--", ":")[k // 10 % 3], marker="osD^v"[k % 5], capsize=3,
            markersize=4, linewidth=2.2 if method == baseline else 1.2, label=method,
        )  # fmt: skip
        dodge = 10 ** ((k - (len(methods) - 1) / 2) * 0.008)  # a few percent along the log axis
        acc: list[tuple[float, float, float]] = []
        diff: list[tuple[float, float, float, float]] = []
        for x, rows in points:
            a = next((r for r in rows if r["base_method"] == method), None)
            if a is None:
                continue
            acc.append((x * dodge, a["test_top1_selected"], interval_half_width(a["test_top1_selected_std"],
                                                                               len(a["seeds"]))))  # fmt: skip
            d = a["paired"]["test_top1_selected"] if a.get("paired") else None
            if d is not None and d.has_interval:
                diff.append((x * dodge, d.mean, d.mean - d.low, d.high - d.mean))
        if acc:
            xs, ys, errs = zip(*acc)
            axes[0].errorbar(xs, ys, yerr=errs, **style)
        if with_paired and diff:
            xs, ys, lo, hi = zip(*diff)
            axes[1].errorbar(xs, ys, yerr=[lo, hi], **style)
    ticks = [x for x, _ in points]
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{x:,.0f}" for x in ticks])
        ax.minorticks_off()
        ax.set_xlim(ticks[0] / 1.35, ticks[-1] * 1.35)
        ax.set_xlabel("labelled training images per class (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 (%), validation-selected epoch")
    axes[0].set_title("mean over seeds, 95 % t interval of the mean", fontsize=10)
    if with_paired:
        axes[1].axhline(0.0, color="black", linewidth=0.8)
        axes[1].set_ylabel(f"test top-1 minus {baseline} (points), same seeds")
        axes[1].set_title(f"paired difference to {baseline}, 95 % t interval", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()  # every method, the baseline too
    axes[-1].legend(handles, labels, fontsize=8, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_png(fig, path)
