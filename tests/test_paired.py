"""Paired statistics over seeds: the t interval against an independent NumPy computation, and the report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from reffakd.distillers import baseline_method, cost_reference_method, method_names, network_sourced_methods
from reffakd.reports.compare_report import aggregate, paired_to_baseline, plot_paired, render_markdown
from reffakd.reports.stats import paired_difference, student_t_cdf, student_t_quantile


def numpy_t_quantile(p: float, df: int) -> float:
    """Independent reference: integrate the t density on a fine grid (trapezoid) and interpolate the inverse CDF."""
    x = np.linspace(0.0, 200.0, 2_000_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


@pytest.mark.parametrize("df", [2, 4, 9, 29])
def test_t_quantile_matches_a_numerical_integration_of_the_density(df: int) -> None:
    assert student_t_quantile(0.975, df) == pytest.approx(numpy_t_quantile(0.975, df), abs=2e-5)


def test_t_quantile_published_values_and_symmetry() -> None:
    # Two-sided 95 % critical values as printed in standard t tables.
    for df, value in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (120, 1.980)):
        assert student_t_quantile(0.975, df) == pytest.approx(value, abs=5e-4)
    assert student_t_quantile(0.025, 4) == pytest.approx(-student_t_quantile(0.975, 4))
    assert student_t_cdf(0.0, 3) == pytest.approx(0.5)
    assert student_t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + arctan(1)/pi


def test_paired_difference_against_numpy() -> None:
    method = {0: 81.2, 1: 80.9, 2: 82.0, 3: 81.5, 4: 80.0}
    base = {0: 80.1, 1: 80.9, 2: 80.4, 3: 81.9, 4: 79.0, 7: 99.0}  # seed 7 has no partner: left out
    d = paired_difference(method, base)
    diffs = np.array([method[s] - base[s] for s in range(5)])
    half = numpy_t_quantile(0.975, 4) * diffs.std(ddof=1) / math.sqrt(5)
    assert d is not None and d.pairs == 5
    assert d.mean == pytest.approx(diffs.mean()) and d.std == pytest.approx(diffs.std(ddof=1))
    assert (d.low, d.high) == pytest.approx((diffs.mean() - half, diffs.mean() + half), abs=1e-4)
    assert (d.wins, d.ties, d.losses) == (3, 1, 1)
    assert not d.excludes_zero()
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 2.0}, {0: 1.0})
    assert one is not None and one.pairs == 1 and math.isnan(one.low) and not one.excludes_zero()


def _row(variant: str, seed: int, selected: float, last: float) -> dict:
    method = variant.split("[")[0]
    return {
        "method": method, "variant": variant, "seed": seed, "grid": {}, "val_top1": 50.0 + selected / 10,
        "test_top1_selected": selected, "test_top1_last": last, "soft_target_source": "none",
        "soft_target_flops": 0, "soft_target_seconds": 0.0, "student_flops": 1, "student_seconds": 1.0,
        "total_flops": 1, "total_seconds": 1.0, "peak_memory_bytes": None,
    }  # fmt: skip


@pytest.mark.usefixtures("plots")
def test_report_pairs_every_method_with_the_baseline_by_seed(tmp_path: Path) -> None:
    assert baseline_method() == "ce"
    rows = [_row("ce", s, 80.0 + s, 79.0 + s) for s in range(3)]
    rows += [_row("ls", s, 81.0 + s, 79.0 + s + (0.5 if s else 0.0)) for s in range(3)]  # +1 every seed
    rows += [_row("kd", 0, 70.0, 70.0)]  # one seed: a difference without an interval
    agg = aggregate(rows, method_names())
    paired = paired_to_baseline(agg, "ce")
    assert [p["method"] for p in paired] == ["ls", "kd"]
    ls = paired[0]["test_top1_selected"]
    assert ls.mean == pytest.approx(1.0) and ls.std == pytest.approx(0.0, abs=1e-9) and (ls.wins, ls.losses) == (3, 0)
    last = paired[0]["test_top1_last"]
    assert (last.wins, last.ties, last.losses) == (2, 1, 0)
    md = render_markdown(agg, "ce")
    assert "Paired difference to ce" in md
    assert "| ls     | 3     | +1.00 [+1.00, +1.00]" in md
    assert "-10.00 (1 pair)" in md and "2/1/0" in md
    assert "Paired difference" not in render_markdown(agg, None)
    assert paired_to_baseline(aggregate(rows[3:], method_names()), "ce") == []  # no baseline runs: no section
    plot_paired(paired, tmp_path / "paired.png")
    assert (tmp_path / "paired.png").stat().st_size > 1000


def test_the_soft_target_cost_table_shows_what_the_registry_names() -> None:
    """The report names no method: the registry says which method is the cost reference (ReffAKD) and which take
    their soft targets from a network (teachers trained apart, then the same-seed student), in the table's order."""
    assert cost_reference_method() == "reffakd"
    tables = ["teacher-table-similarity", "teacher-table-shuffled", "teacher-table-uniform"]  # a teacher's cost too
    assert network_sourced_methods() == ["kd", "dkd", *tables, "tfkd-self"]
    rows = []
    for method, flops in (("tfkd-self", 8e11), ("dkd", 4e12), ("kd", 2e12), ("reffakd", 1e11), ("ls", 0)):
        row = _row(method, 0, 70.0, 70.0)
        row.update(soft_target_source=method, soft_target_flops=flops, soft_target_seconds=flops / 1e10)
        rows.append(row)
    agg = aggregate(rows, method_names())
    md = render_markdown(agg, "ce", cost_reference_method(), network_sourced_methods())
    table = md[md.index("Soft targets against ReffAKD's (100.00 G, 10 s):") :].splitlines()[4:]
    assert [line.split("|")[1].strip() for line in table if line] == ["kd", "dkd", "tfkd-self"]
    assert "| kd        | kd        | 2.00 T            | 200 s            | 20.0x" in md
    assert "Soft targets against" not in render_markdown(agg, "ce", None, network_sourced_methods())
    assert "Soft targets against" not in render_markdown(agg, "ce", "reffakd", ["ls"])  # no soft-target cost: no row
