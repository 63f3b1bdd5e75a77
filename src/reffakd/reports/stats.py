"""Paired statistics over seeds: how much a method beats the baseline, and how sure we are.

Runs of two methods with the same seed share the student's initialisation and the data order, so the
per-seed difference removes most of the seed-to-seed spread that separate means and standard deviations
carry. The interval is Student's t over the seeds' differences. Written without SciPy (not a dependency):
the t quantile is found by bisection on the t distribution's CDF, computed from the regularised
incomplete beta function by its continued fraction.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

TIE_TOLERANCE = 1e-9  # accuracies in percent: the same number of correct images gives the same float


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), which converges fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of the Beta(a, b) distribution at ``x``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on the CDF, to 1e-12 relative)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t quantile: p must be in (0, 1) and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class PairedDifference:
    """Method minus baseline over the seeds both ran: mean, sample std, the t interval, wins/ties/losses.

    With one pair there is no interval (``low`` and ``high`` are NaN).
    """

    pairs: int
    mean: float
    std: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    confidence: float = 0.95

    @property
    def has_interval(self) -> bool:
        return self.pairs > 1

    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below zero."""
        return self.has_interval and (self.low > 0 or self.high < 0)


def paired_difference(
    method: Mapping[int, float], baseline: Mapping[int, float], confidence: float = 0.95
) -> PairedDifference | None:
    """Pair ``method`` and ``baseline`` by seed (the keys); ``None`` when they share no seed."""
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return None
    diffs = [float(method[s]) - float(baseline[s]) for s in seeds]
    n, mean = len(diffs), statistics.fmean(diffs)
    std = statistics.stdev(diffs) if n > 1 else 0.0
    if n > 1:
        half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = math.nan
    wins = sum(d > TIE_TOLERANCE for d in diffs)
    losses = sum(d < -TIE_TOLERANCE for d in diffs)
    return PairedDifference(n, mean, std, low, high, wins, n - wins - losses, losses, confidence)


def format_paired(d: PairedDifference | None) -> str:
    """``+1.23 [+0.40, +2.06]`` (points), or ``+1.23 (1 pair)`` without an interval."""
    if d is None:
        return "-"
    if not d.has_interval:
        return f"{d.mean:+.2f} (1 pair)"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
