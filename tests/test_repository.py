"""The repository keeps what the docs cite: the per-run logs under benchmarks/results are not ignored by git.

A `runs/` ignore pattern once matched every `benchmarks/results/**/runs/` folder, so the study's per-run logs that
docs/RESULTS.md names were never committed, silently.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_benchmark_run_logs_are_not_ignored_but_local_runs_are() -> None:
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    for path in (
        "benchmarks/results/study-label-budgets/labels-100/runs/ce/seed0/metrics.jsonl",
        "benchmarks/results/study-label-budgets/labels-100/tuning/ls_epsilon0.1/seed0/summary.json",
    ):
        assert not ignored(path), path
    assert ignored("runs/study-label-budgets/labels-100/runs/ce/seed0/best.safetensors")  # local outputs stay out
