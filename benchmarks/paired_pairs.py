"""Head-to-head paired differences between methods of one comparison folder (same seed = same initial weights and
data order), at the validation-selected and the last epoch, with 95 % t intervals and wins/ties/losses.

The comparison report pairs every method with the baseline only; the study's questions (does AESL beat OLS, does
per-image AESL beat class-level AESL, does the unlabelled data help, AESL against a teacher) pair other methods:

    python benchmarks/paired_pairs.py runs/study-label-budgets/labels-100 reffakd:ols reffakd-instance:reffakd
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reffakd.reports.compare_report import collect_runs
from reffakd.reports.stats import format_paired, paired_difference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path, help="a comparison folder (or one budget's folder of a study)")
    ap.add_argument("pairs", nargs="+", help="A:B, for A minus B")
    args = ap.parse_args()
    rows = collect_runs(args.folder)
    print("| A - B | pairs | Δ test top-1 (selected) | W/T/L | Δ test top-1 (last) | W/T/L |")
    print("|---|---|---|---|---|---|")
    for pair in args.pairs:
        a, b = pair.split(":")
        cells, n = [], 0
        for key in ("test_top1_selected", "test_top1_last"):
            by_seed = [{r["seed"]: r[key] for r in rows if r["variant"] == m} for m in (a, b)]
            if not all(by_seed):
                raise SystemExit(f"no finished run of {a if not by_seed[0] else b} in {args.folder}")
            d = paired_difference(*by_seed)
            n = d.pairs if d else 0
            cells += [format_paired(d), f"{d.wins}/{d.ties}/{d.losses}" if d else "-"]
        print(f"| {a} - {b} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
