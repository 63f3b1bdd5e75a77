"""``reffakd sweep``'s outputs: ``sweep.csv`` and ``sweep.md``, one row per setting (grid variant, or a
plain method run beside the grid), sorted by mean validation top-1.

Built from the same per-run ``summary.json`` files as the comparison report (``collect_runs``,
``aggregate``), and the chosen setting is the comparison's: per method, the variant with the best
mean validation top-1 among those with the most seeds. Its test top-1 is stated; the test set
never takes part in the choice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import write_text_atomic
from .compare_report import aggregate, collect_runs, select_by_validation
from .tables import markdown_table


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def sweep_table(
    out: Path, method_order: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[str], dict[str, dict[str, Any]]]:
    """(rows sorted by mean validation top-1, the grid keys, the chosen variant per grid method)."""
    agg = aggregate(collect_runs(out), list(method_order))
    keys = list(dict.fromkeys(k for a in agg for k in a["point"]))
    chosen = select_by_validation(agg)
    ranked = sorted(agg, key=lambda a: -a["val_top1"])  # stable: ties keep report order
    rows = []
    for rank, a in enumerate(ranked, 1):
        rows.append(
            {
                "rank": rank,
                "variant": a["method"],
                "method": a["base_method"],
                **{k: a["point"].get(k, "") for k in keys},
                "seeds": len(a["seeds"]),
                "val_top1": round(a["val_top1"], 4),
                "val_top1_std": round(a["val_top1_std"], 4),
                "test_top1": round(a["test_top1_selected"], 4),
                "test_top1_std": round(a["test_top1_selected_std"], 4),
                "student_seconds": round(a["student_seconds"], 2),
                "chosen": chosen.get(a["base_method"]) is a,
            }
        )
    return rows, keys, chosen


def render_sweep(rows: list[dict[str, Any]], keys: list[str], chosen: dict[str, dict[str, Any]]) -> str:
    headers = ["rank", "setting", *keys, "seeds", "val top-1", "test top-1", "train time per run"]
    table = [
        [
            r["rank"],
            f"**{r['variant']}**" if r["chosen"] else r["variant"],
            *(_value(r[k]) if r[k] != "" else "-" for k in keys),
            r["seeds"],
            f"{r['val_top1']:.2f} ± {r['val_top1_std']:.2f}",
            f"{r['test_top1']:.2f} ± {r['test_top1_std']:.2f}",
            f"{r['student_seconds']:,.0f} s" if r["student_seconds"] >= 1 else f"{r['student_seconds']:.2f} s",
        ]
        for r in rows
    ]
    text = [
        "# Sweep",
        "",
        "Sorted by mean validation top-1 (± sample standard deviation over seeds). Test top-1 at the",
        "validation-selected epoch, for the record: the chosen setting (bold) is picked by validation only, among the",
        "settings with the most finished seeds.",
        "",
        markdown_table(headers, table),
        "",
    ]
    for method, a in chosen.items():
        n = sum(1 for r in rows if r["method"] == method and r["variant"] != method)
        values = ", ".join(f"{k} {_value(v)}" for k, v in a["point"].items())
        text.append(
            f"Chosen by validation for {method}: {a['method']} ({values}): val top-1 {a['val_top1']:.2f}, "
            f"test top-1 {a['test_top1_selected']:.2f} ({n} settings, {len(a['seeds'])} seed(s) each)."
        )
    return "\n".join(text) + "\n"


def write_sweep_report(out: Path, method_order: Sequence[str] = ()) -> str:
    """Rebuild ``sweep.csv`` and ``sweep.md`` from the finished runs; returns the Markdown
    ('' before any run finished)."""
    rows, keys, chosen = sweep_table(out, method_order)
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "sweep.csv", buf.getvalue())
    md = render_sweep(rows, keys, chosen)
    write_text_atomic(out / "sweep.md", md)
    return md
