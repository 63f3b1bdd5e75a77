"""The comparison's outputs: ``results.csv`` (one row per run), ``results.md`` (mean and std over
seeds, with cost, and each method's paired difference to the baseline), ``accuracy_vs_cost.png`` (test
top-1 against total cost, log scale) and ``paired_vs_baseline.png`` (the paired differences with their
95 % intervals).

Runs are grouped by *variant*: a method's name, or one grid point of it (``reffakd[alpha=0.5,temperature=4]``,
``reffakd[alpha=0.5,lr=0.05]``).
For each method run over a grid, one variant is selected by its mean validation top-1 (the test
set never takes part in the choice) and stands for the method in the cost comparison and the plot.

Everything is rebuilt from the runs' ``summary.json`` files, so the report of a resumed comparison
is the same as that of one that never stopped.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import read_json, write_text_atomic
from .plots import figure
from .stats import PairedDifference, format_paired, paired_difference
from .tables import format_flops, markdown_table

PAIRED_KEYS = ("test_top1_selected", "test_top1_last")  # what the paired differences compare

CSV_COLUMNS = [
    "method",
    "variant",
    "seed",
    "alpha",
    "temperature",
    "best_epoch",
    "val_top1",
    "test_top1_selected",
    "test_top1_last",
    "test_top5_selected",
    "student_parameters",
    "student_forward_macs_per_image",
    "student_flops",
    "student_seconds",
    "soft_target_source",
    "soft_target_flops",
    "soft_target_seconds",
    "teacher_forward_flops",
    "total_flops",
    "total_seconds",
    "peak_memory_bytes",
    "tuned",
]


def collect_runs(out: Path) -> list[dict[str, Any]]:
    """One flat row per finished run under ``out/runs/<method or variant folder>/seed<k>/``."""
    rows = []
    for path in sorted((out / "runs").glob("*/seed*/summary.json")):
        s = read_json(path, "run summary", "`reffakd compare` or `reffakd sweep` when the run finishes")
        cost = s["cost"]
        totals, soft = cost["totals"], cost.get("soft_targets") or {}
        config = s.get("config", {})
        rows.append(
            {
                "method": s["method"],
                "variant": s.get("variant", s["method"]),
                "seed": s["seed"],
                "grid": s.get("grid") or {},
                "alpha": config.get("alpha", ""),
                "temperature": config.get("temperature", ""),
                "best_epoch": s["best_epoch"],
                "val_top1": s["best_val_top1"],
                "test_top1_selected": s["test_best"]["top1"],
                "test_top1_last": s["test_last"]["top1"],
                "test_top5_selected": s["test_best"]["top5"],
                "student_parameters": s["parameters"],
                "student_forward_macs_per_image": s["forward_macs_per_image"],
                "student_flops": totals["student"]["flops"],
                "student_seconds": totals["student"]["seconds"],
                "soft_target_source": soft.get("source", "none"),
                "soft_target_flops": totals["soft_targets"]["flops"],
                "soft_target_seconds": totals["soft_targets"]["seconds"],
                "teacher_forward_flops": soft.get("stages", {}).get("teacher_forward", {}).get("flops", 0),
                "total_flops": totals["flops"],
                "total_seconds": totals["seconds"],
                "peak_memory_bytes": totals.get("peak_memory_bytes"),
                # the setting equal tuning chose for this run's method (``tuning.py``); "" when not tuned
                "tuned": ";".join(f"{k}={v:g}" for k, v in (s.get("tuned") or {}).items()),
            }
        )
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def grid_point(row: dict[str, Any]) -> dict[str, Any]:
    """The grid values of a run (empty for a plain run); rows without them read alpha and T."""
    if row["variant"] == row["method"]:
        return {}
    return row.get("grid") or {"alpha": row.get("alpha", ""), "temperature": row.get("temperature", "")}


def _sortable(value: Any) -> tuple:
    return (
        (0, float(value), "")
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else (1, 0.0, str(value))
    )


def aggregate(rows: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds, per variant; methods in ``order``, a method's grid
    points after its plain runs, by alpha then T."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)

    def sort_key(variant: str) -> tuple:
        r = by_variant[variant][0]
        rank = order.index(r["method"]) if r["method"] in order else len(order)
        return (rank, r["method"], variant != r["method"], tuple(_sortable(v) for v in grid_point(r).values()), variant)

    out = []
    for variant in sorted(by_variant, key=sort_key):
        rs = by_variant[variant]
        agg: dict[str, Any] = {
            "method": variant,
            "base_method": rs[0]["method"],
            "grid": variant != rs[0]["method"],
            "point": grid_point(rs[0]),
            "seeds": sorted(r["seed"] for r in rs),
            "source": rs[0]["soft_target_source"],
            "tuned": rs[0].get("tuned", ""),
        }
        for key in (
            "val_top1",
            "test_top1_selected",
            "test_top1_last",
            "soft_target_flops",
            "soft_target_seconds",
            "student_flops",
            "student_seconds",
            "total_flops",
            "total_seconds",
        ):
            agg[key], agg[key + "_std"] = _mean_std([float(r[key]) for r in rs])
        agg["peak_memory_bytes"] = max((r["peak_memory_bytes"] or 0) for r in rs) or None
        agg["per_seed"] = {key: {r["seed"]: float(r[key]) for r in rs} for key in PAIRED_KEYS}
        out.append(agg)
    return out


def select_by_validation(agg: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method run over a grid: the variant with the best mean validation top-1, never chosen by test.

    Only variants with the most seeds of that method compete (a half-finished grid does not let a
    single lucky seed win); ties go to the first in report order.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(a["base_method"] for a in agg if a["grid"]):
        variants = [a for a in agg if a["grid"] and a["base_method"] == method]
        most = max(len(a["seeds"]) for a in variants)
        chosen[method] = max((a for a in variants if len(a["seeds"]) == most), key=lambda a: a["val_top1"])
    return chosen


def representatives(agg: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per method: its plain runs, else its variant selected by validation."""
    chosen = select_by_validation(agg)
    return [a for a in agg if not a["grid"] or chosen.get(a["base_method"]) is a]


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _seconds(s: float) -> str:
    return f"{s:,.0f} s" if s >= 1 else ("0 s" if s == 0 else f"{s:.2f} s")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.1f}x" if b > 0 else "-"


def paired_to_baseline(agg: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """Per method other than ``baseline`` (its representative variant): the paired differences, by seed,
    of test top-1 at the validation-selected and at the last epoch. Empty without baseline runs."""
    by = {a["base_method"]: a for a in representatives(agg)}
    if baseline is None or baseline not in by:
        return []
    base = by[baseline]
    out = []
    for method, a in by.items():
        if method == baseline:
            continue
        diffs: dict[str, PairedDifference | None] = {
            key: paired_difference(a["per_seed"][key], base["per_seed"][key]) for key in PAIRED_KEYS
        }
        if any(d is not None for d in diffs.values()):
            out.append({"method": a["method"], "baseline": base["method"], **diffs})
    return out


def _wtl(d: PairedDifference | None) -> str:
    return f"{d.wins}/{d.ties}/{d.losses}" if d is not None else "-"


def render_paired(paired: list[dict[str, Any]]) -> list[str]:
    """The paired-difference section of ``results.md`` (nothing when there is no baseline to pair with)."""
    if not paired:
        return []
    rows = [
        [
            p["method"],
            (p["test_top1_selected"] or p["test_top1_last"]).pairs,
            format_paired(p["test_top1_selected"]),
            _wtl(p["test_top1_selected"]),
            format_paired(p["test_top1_last"]),
            _wtl(p["test_top1_last"]),
        ]
        for p in paired
    ]
    headers = ["method", "pairs", "Δ test top-1 (selected)", "W/T/L", "Δ test top-1 (last)", "W/T/L"]
    return [
        "",
        f"Paired difference to {paired[0]['baseline']}, in points of test top-1: the mean over the seeds both ran "
        "of (method - baseline)",
        "with the same seed, [its 95 % confidence interval] (Student's t over the seeds), and wins/ties/losses "
        "over those seeds.",
        "An interval that contains 0 means the seeds do not show a difference.",
        "",
        markdown_table(headers, rows),
    ]


def render_markdown(
    agg: list[dict[str, Any]],
    baseline: str | None = None,
    cost_reference: str | None = None,
    network_sourced: Sequence[str] = (),
) -> str:
    """``results.md``. The registry's names (asked by the caller, above the methods' floor): ``baseline``, paired with
    every other method; ``cost_reference``, whose soft-target cost those of ``network_sourced`` are set against."""
    headers = [
        "method",
        "seeds",
        "val top-1",
        "test top-1 (selected)",
        "test top-1 (last)",
        "soft targets from",
        "soft-target FLOPs",
        "soft-target time",
        "student FLOPs",
        "student time",
        "total FLOPs",
        "total time",
        "peak memory",
    ]
    rows = [
        [
            a["method"],
            len(a["seeds"]),
            _pm(a["val_top1"], a["val_top1_std"]),
            _pm(a["test_top1_selected"], a["test_top1_selected_std"]),
            _pm(a["test_top1_last"], a["test_top1_last_std"]),
            a["source"],
            format_flops(a["soft_target_flops"]) if a["soft_target_flops"] else "0",
            _seconds(a["soft_target_seconds"]),
            format_flops(a["student_flops"]),
            _seconds(a["student_seconds"]),
            format_flops(a["total_flops"]),
            _seconds(a["total_seconds"]),
            f"{a['peak_memory_bytes'] / 2**30:.2f} GiB" if a["peak_memory_bytes"] else "-",
        ]
        for a in agg
    ]
    text = [
        "# Comparison",
        "",
        "Mean ± sample standard deviation over seeds. *Selected*: the epoch with the best validation top-1;",
        "*last*: the final epoch. Costs are per run: the soft targets (autoencoder pipeline, "
        "or the teacher's own training",
        "plus its forward passes during distillation) and the student's training; wall time on this run's machine.",
        "",
        markdown_table(headers, rows),
    ]
    text += render_paired(paired_to_baseline(agg, baseline))
    tuned = [f"- {a['method']}: {a['tuned'].replace(';', ', ')}" for a in agg if a.get("tuned")]
    if tuned:
        text += ["", "Settings chosen by equal tuning on validation (every trial in tuning.md):", "", *tuned]
    chosen = select_by_validation(agg)
    if chosen:
        text += [
            "",
            "Grid: per method, the variant with the best mean validation top-1 (over the seeds; only variants",
            "with the most seeds compete). The test top-1 is reported, never used to choose.",
            "",
        ]
        for method, a in chosen.items():
            n = sum(1 for b in agg if b["grid"] and b["base_method"] == method)
            text.append(
                f"- selected by validation: {a['method']}, val {a['val_top1']:.2f}, test {a['test_top1_selected']:.2f} "
                f"({method}: {n} variants, {len(a['seeds'])} seed(s); test top-1 at the validation-selected epoch)"
            )
    by = {a["base_method"]: a for a in representatives(agg)}
    if cost_reference in by and by[cost_reference]["soft_target_flops"] > 0:
        ref = by[cost_reference]
        lines = []
        for m in network_sourced:
            if m in by and by[m]["soft_target_flops"] > 0:
                a = by[m]
                lines.append(
                    [
                        a["method"],
                        a["source"],
                        format_flops(a["soft_target_flops"]),
                        _seconds(a["soft_target_seconds"]),
                        _ratio(a["soft_target_flops"], ref["soft_target_flops"]),
                        _ratio(a["soft_target_seconds"], ref["soft_target_seconds"]),
                    ]
                )
        if lines:
            text += [
                "",
                f"Soft targets against ReffAKD's ({ref['method'] + ': ' if ref['grid'] else ''}"
                f"{format_flops(ref['soft_target_flops'])}, {_seconds(ref['soft_target_seconds'])}):",
                "",
                markdown_table(
                    [
                        "method",
                        "source",
                        "soft-target FLOPs",
                        "soft-target time",
                        "x ReffAKD's FLOPs",
                        "x ReffAKD's time",
                    ],
                    lines,
                ),
            ]
    return "\n".join(text) + "\n"


@figure
def plot_accuracy_vs_cost(agg: list[dict[str, Any]], path: Path) -> None:
    """One point per method: a grid method by its variant selected on validation."""
    from .plots import new_figure, plain_log_ticks, save_png

    agg = representatives(agg)
    fig = new_figure((12, 4.5))
    axes = fig.subplots(1, 2)
    for ax, key, label in (
        (axes[0], "total_flops", "total FLOPs per run (soft targets + student)"),
        (axes[1], "total_seconds", "total wall time per run (s)"),
    ):
        for a in agg:
            x = max(a[key], 1e-9)
            ax.errorbar(
                [x],
                [a["test_top1_selected"]],
                yerr=[a["test_top1_selected_std"]],
                fmt="o",
                capsize=3,
                label=a["method"],
            )
            ax.annotate(
                a["method"], (x, a["test_top1_selected"]), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%), validation-selected epoch")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("accuracy against cost (mean ± std over seeds)", fontsize=10)
    save_png(fig, path)


@figure
def plot_paired(paired: list[dict[str, Any]], path: Path) -> None:
    """Each method's paired difference to the baseline with its 95 % interval, selected and last epoch."""
    from .plots import new_figure, save_png

    fig = new_figure((7, 0.5 * len(paired) + 1.8))
    ax = fig.subplots()
    for offset, key, label in ((-0.15, "test_top1_selected", "selected epoch"), (0.15, "test_top1_last", "last")):
        ys, xs, lows, highs = [], [], [], []
        for i, p in enumerate(paired):
            d = p[key]
            if d is None:
                continue
            ys.append(i + offset)
            xs.append(d.mean)
            lows.append(d.mean - d.low if d.has_interval else 0.0)
            highs.append(d.high - d.mean if d.has_interval else 0.0)
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="o", capsize=3, label=label)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(paired)), [p["method"] for p in paired])
    ax.invert_yaxis()
    ax.set_xlabel(f"test top-1 minus {paired[0]['baseline']}'s, same seed (points; 95 % t interval)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    save_png(fig, path)


def write_compare_report(
    out: Path,
    method_order: Sequence[str],
    plot: bool = True,
    baseline: str | None = None,
    cost_reference: str | None = None,
    network_sourced: Sequence[str] = (),
) -> str:
    """Rebuild the outputs from the finished runs (the plots only when ``plot``); returns the Markdown ('' before
    any run finished). ``baseline``, ``cost_reference`` and ``network_sourced``: the registry's (``render_markdown``).
    """
    rows = collect_runs(out)
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "results.csv", buf.getvalue())
    agg = aggregate(rows, list(method_order))
    md = render_markdown(agg, baseline, cost_reference, network_sourced)
    write_text_atomic(out / "results.md", md)
    if plot:
        plot_accuracy_vs_cost(agg, out / "accuracy_vs_cost.png")
        paired = paired_to_baseline(agg, baseline)
        if paired:
            plot_paired(paired, out / "paired_vs_baseline.png")
    return md
