"""Equal tuning: every method gets the same number of trials at the same short budget, chosen on validation.

A comparison of hand-picked parameters measures the picking as much as the methods. The trials (``OUT/tuning/``) are
trained without the test split, so the test set takes no part in the choice.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from .errors import ReffAKDError
from .io import read_json, write_text_atomic
from .reports.tables import markdown_table
from .spec import RunItem, RunSpec, folder_name


def item_path(out: Path, item: RunItem) -> Path:
    """``out/<stage>/<method or variant folder>/seed<k>``: final runs under ``runs``, trials under ``tuning``."""
    return out / item.stage / folder_name(item.variant) / f"seed{item.seed}"


def trial_results(out: Path, spec: RunSpec) -> list[dict[str, Any]]:
    """One row per trial (method x point): its finished seeds and their validation top-1 (best and last epoch)."""
    rows: dict[str, dict[str, Any]] = {}
    for item in spec.tuning_items():
        point = {k: v for k, v in item.point if k != "epochs"}  # the setting; the short budget is the tune's
        row = rows.setdefault(
            item.variant,
            {"method": item.method, "point": point, "variant": item.variant, "val_best": [], "val_last": []},
        )
        path = item_path(out, item) / "summary.json"
        if path.is_file():
            s = read_json(path, "tuning trial summary", "`reffakd compare` when a trial finishes")
            row["val_best"].append(float(s["best_val_top1"]))
            row["val_last"].append(float(s["last_val_top1"]))
    return list(rows.values())


def choose(out: Path, spec: RunSpec) -> dict[str, dict[str, Any]]:
    """Per tuned method, the point with the best mean validation top-1 over the tune seeds (ties: the first
    trial). Only validation numbers are read; every trial must have finished."""
    seeds = len(spec.tune.trial_seeds) if spec.tune else 0
    chosen: dict[str, dict[str, Any]] = {}
    best: dict[str, float] = {}
    for row in trial_results(out, spec):
        if len(row["val_best"]) != seeds:
            raise ReffAKDError(f"tuning trial {row['variant']} has not finished; run the comparison again to finish it")
        score = statistics.fmean(row["val_best"])
        if row["method"] not in best or score > best[row["method"]]:
            best[row["method"]], chosen[row["method"]] = score, row["point"]
    return chosen


def write_tuning_report(out: Path, spec: RunSpec) -> str:
    """``tuning.csv`` (one row per trial and seed) and ``tuning.md`` (per method: its trials and the choice)."""
    rows = trial_results(out, spec)
    if spec.tune is None or not rows:
        return ""
    done = [r for r in rows if r["val_best"]]
    chosen = choose(out, spec) if all(len(r["val_best"]) == len(spec.tune.trial_seeds) for r in rows) else {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "variant", "seed_index", "val_top1_best", "val_top1_last", "chosen"])
    for r in done:
        for k, (b, last) in enumerate(zip(r["val_best"], r["val_last"])):
            writer.writerow([r["method"], r["variant"], k, b, last, chosen.get(r["method"]) == r["point"]])
    write_text_atomic(out / "tuning.csv", buf.getvalue())
    t = spec.tune
    table = [
        [
            r["variant"] + (" **(chosen)**" if chosen.get(r["method"]) == r["point"] else ""),
            len(r["val_best"]),
            f"{statistics.fmean(r['val_best']):.2f}" if r["val_best"] else "-",
            f"{statistics.fmean(r['val_last']):.2f}" if r["val_last"] else "-",
        ]
        for r in rows
    ]
    untuned = [m for m in spec.method_order() if not spec.tuning_points(m)]
    md = [
        "# Equal tuning",
        "",
        f"Every method: at most {t.trials} trials (its registry tuning grid"
        + (f" crossed with {', '.join(t.params)}" if t.params else "")
        + f", sampled when larger) of {t.epochs} epochs over seed(s) {', '.join(map(str, t.trial_seeds))}; "
        "the trial with the best mean validation top-1 is chosen. The trials never see the test split.",
        "",
        markdown_table(["trial", "seeds", "val top-1 (best epoch)", "val top-1 (last epoch)"], table),
    ]
    if untuned:
        md += ["", f"Not tuned (nothing to vary, or it distils another run of its seed): {', '.join(untuned)}."]
    text = "\n".join(md) + "\n"
    write_text_atomic(out / "tuning.md", text)
    return text
