"""The label-budget study's report from whatever has finished so far, written outside the study folder.

A study writes ``study.md`` and ``study.png`` when every budget is done; while it runs (or after it was stopped),
this rebuilds the same report from the budgets' finished runs, so partial results can be read and committed:

    python benchmarks/study_progress.py runs/study-label-budgets benchmarks/results/study-label-budgets
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reffakd.io import read_json
from reffakd.spec import RunSpec
from reffakd.study import study_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("study", type=Path, help="the study's --out folder")
    ap.add_argument("dst", type=Path, help="where study.md and study.png go")
    args = ap.parse_args()
    spec = RunSpec.from_dict(read_json(args.study / "spec.json", "study spec", "`reffakd compare`"), "study spec")
    assert spec.budgets is not None, f"{args.study} is not a label-budget study"
    args.dst.mkdir(parents=True, exist_ok=True)
    print(study_report(spec, args.study, args.dst))


if __name__ == "__main__":
    main()
