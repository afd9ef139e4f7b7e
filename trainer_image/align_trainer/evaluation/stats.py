"""Pure statistics shared by policy and reward-model evaluation (numpy only, no torch).

Every function takes plain sequences and returns plain numbers, so the numbers in `status.evaluation`
can be checked by hand in unit tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, Sequence

import numpy as np

#: Two rewards closer than this are a tie (graders such as string_check return exact 0/1).
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    method: str


@dataclass(frozen=True)
class WinTieLoss:
    """Pairwise outcome rates. `win_rate` counts a tie as half a win (AlpacaEval's convention), so that
    0.5 means "no better than the reference" even when most pairs tie."""

    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        return (self.wins + 0.5 * self.ties) / self.n if self.n else math.nan

    @property
    def strict_win_rate(self) -> float:
        return self.wins / self.n if self.n else math.nan

    @property
    def tie_rate(self) -> float:
        return self.ties / self.n if self.n else math.nan

    @property
    def loss_rate(self) -> float:
        return self.losses / self.n if self.n else math.nan


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=float)


def win_tie_loss(policy: Sequence[float], reference: Sequence[float], tolerance: float = TIE_TOLERANCE) -> WinTieLoss:
    """Compare paired rewards: policy[i] vs reference[i] on the same prompt."""
    p, r = _array(policy), _array(reference)
    if p.shape != r.shape:
        raise ValueError(f"paired rewards differ in length: {p.size} vs {r.size}")
    diff = p - r
    ok = ~np.isnan(diff)  # a failed grading (NaN) is neither a win nor a loss: it is left out
    diff = diff[ok]
    wins = int(np.sum(diff > tolerance))
    losses = int(np.sum(diff < -tolerance))
    return WinTieLoss(wins=wins, ties=int(diff.size) - wins - losses, losses=losses)


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion around the normal quantile (Abramowitz & Stegun
    26.7.5); within 1e-3 of the exact value for df >= 3, which is all a confidence interval needs."""
    if df < 1:
        return math.nan
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def mean_ci(values: Sequence[float], confidence: float = 0.95, method: Literal["bootstrap", "t"] = "bootstrap",
            resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean of `values` (NaNs dropped) with a two-sided confidence interval.

    bootstrap: percentile bootstrap with a fixed seed (no normality assumption; rewards are often 0/1).
    t: mean +- t_{(1+c)/2, n-1} * s / sqrt(n).
    """
    x = _array(values)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, method)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, method)
    alpha = 1 - confidence
    if method == "t":
        half = t_quantile(1 - alpha / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
        return Interval(mean, mean - half, mean + half, n, method)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(mean, float(low), float(high), n, method)


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _array(x), _array(y)
    if a.shape != b.shape:
        raise ValueError(f"correlation needs equal lengths: {a.size} vs {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when fewer than 3 points or either side is constant (r is undefined then)."""
    a, b = _finite_pairs(x, y)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 1-based, as Spearman's rho requires."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks_sorted = np.empty(values.size, dtype=float)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks_sorted[start:end + 1] = (start + end) / 2 + 1
        start = end + 1
    out = np.empty(values.size, dtype=float)
    out[order] = ranks_sorted
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks."""
    a, b = _finite_pairs(x, y)
    if a.size < 3:
        return math.nan
    return pearson(ranks(a), ranks(b))


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and quantiles of a distribution (NaNs dropped, counted)."""
    x = _array(values)
    nan = int(np.isnan(x).sum())
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {"n": 0, "nan": nan, "mean": math.nan, "std": math.nan, "min": math.nan, "p25": math.nan,
                "median": math.nan, "p75": math.nan, "max": math.nan}
    p25, median, p75 = np.quantile(x, [0.25, 0.5, 0.75])
    return {"n": int(x.size), "nan": nan, "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min": float(x.min()), "p25": float(p25), "median": float(median), "p75": float(p75), "max": float(x.max())}


def length_ratio(policy_lengths: Sequence[float], reference_lengths: Sequence[float]) -> float:
    """Mean policy length over mean reference length (a ratio of means, so an empty answer is no division by 0)."""
    ref = float(np.mean(_array(reference_lengths))) if len(reference_lengths) else math.nan
    pol = float(np.mean(_array(policy_lengths))) if len(policy_lengths) else math.nan
    return pol / ref if ref > 0 else math.nan


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=float), -60, 60)))


def finite_or_none(value: float | None) -> float | None:
    """JSON and status.evaluation carry no NaN/inf: an undefined number is null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
