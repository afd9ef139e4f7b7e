"""Pure statistics of the evaluation: hand-checkable numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align_trainer.evaluation.policy_stats import Sample, evaluate_policy, refusal_rate, top_changes
from align_trainer.evaluation.stats import (finite_or_none, length_ratio, mean_ci, pearson, ranks, spearman, summary,
                                            t_quantile, win_tie_loss)


def test_win_tie_loss_counts_and_rates() -> None:
    wtl = win_tie_loss([1, 0, 0.5, 0.7, math.nan], [0, 0, 0.9, 0.7, 1])
    assert (wtl.wins, wtl.ties, wtl.losses) == (1, 2, 1)  # the NaN pair is left out, not a loss
    assert wtl.win_rate == pytest.approx((1 + 0.5 * 2) / 4)
    assert wtl.strict_win_rate == pytest.approx(0.25)
    assert wtl.tie_rate == pytest.approx(0.5)
    assert wtl.loss_rate == pytest.approx(0.25)


def test_all_ties_is_half_not_zero() -> None:
    # A 0/1 grader that fails both models everywhere: "no better", not "always worse".
    assert win_tie_loss([0, 0, 0], [0, 0, 0]).win_rate == 0.5


def test_win_tie_loss_needs_pairs() -> None:
    with pytest.raises(ValueError, match="paired"):
        win_tie_loss([1, 2], [1])


@pytest.mark.parametrize("df,expected", [(5, 2.5706), (10, 2.2281), (30, 2.0423), (100, 1.9840)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def test_t_interval_by_hand() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    ci = mean_ci(x, method="t")
    half = t_quantile(0.975, 4) * np.std(x, ddof=1) / math.sqrt(5)
    assert ci.mean == 3.0 and ci.low == pytest.approx(3 - half) and ci.high == pytest.approx(3 + half)
    assert 2.776 - 0.01 < (ci.high - 3) / (np.std(x, ddof=1) / math.sqrt(5)) < 2.776 + 0.05


def test_bootstrap_interval_is_deterministic_and_covers_mean() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, size=200)
    a, b = mean_ci(x, seed=7), mean_ci(x, seed=7)
    assert a == b
    assert a.low < a.mean < a.high
    t = mean_ci(x, method="t")
    assert a.low == pytest.approx(t.low, abs=0.05) and a.high == pytest.approx(t.high, abs=0.05)


def test_mean_ci_degenerate() -> None:
    assert math.isnan(mean_ci([]).mean)
    one = mean_ci([2.0])
    assert one.mean == 2.0 and math.isnan(one.low)
    assert mean_ci([1.0, math.nan, 3.0]).mean == 2.0


def test_correlations() -> None:
    x = [1, 2, 3, 4, 5]
    assert pearson(x, [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman(x, [1, 4, 9, 16, 100]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, [1, 4, 9, 16, 100]) < 0.95
    assert spearman(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson(x, [1, 1, 1, 1, 1]))  # constant side: undefined, not 0
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_ranks_average_ties() -> None:
    assert ranks(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_summary_and_length_ratio() -> None:
    s = summary([1, 2, 3, 4, math.nan])
    assert s["n"] == 4 and s["nan"] == 1 and s["mean"] == 2.5 and s["median"] == 2.5 and s["max"] == 4
    assert length_ratio([10, 30], [10, 10]) == 2.0
    assert math.isnan(length_ratio([1], [0]))


def test_finite_or_none() -> None:
    assert finite_or_none(math.nan) is None and finite_or_none(math.inf) is None and finite_or_none(1) == 1.0


def _sample(p: float, r: float, pl: int = 10, rl: int = 10, label: str | None = None) -> Sample:
    return Sample(prompt=f"q{p}{r}", policy=f"P{p}", reference=f"R{r}", policy_reward=p, reference_reward=r,
                  policy_length=pl, reference_length=rl, policy_label=label, reference_label=None)


def test_evaluate_policy_metrics() -> None:
    samples = [_sample(1, 0, 20, 10), _sample(1, 0, 20, 10), _sample(0, 0, 10, 10), _sample(0, 1, 10, 20)]
    ev = evaluate_policy(samples)
    m = ev.metrics
    assert m["winRate"] == pytest.approx(0.625) and m["tieRate"] == 0.25 and m["lossRate"] == 0.25
    assert m["policyReward"] == 0.5 and m["referenceReward"] == 0.25 and m["rewardDelta"] == 0.25
    assert m["rewardDeltaLow"] <= 0.25 <= m["rewardDeltaHigh"]
    assert ev.details["winRateLow"] <= 0.625 <= ev.details["winRateHigh"]
    assert m["lengthRatio"] == pytest.approx(60 / 50)
    assert m["lengthRewardCorrelation"] > 0.8  # here the longer answers are the rewarded ones
    assert m["samples"] == 4 and "refusalRate" not in m
    assert [s.delta for s in ev.top_gains] == [1, 1] and [s.delta for s in ev.top_losses] == [-1]


def test_policy_metrics_are_gate_names() -> None:
    from align_api.evaluation import GATE_METRICS
    ev = evaluate_policy([_sample(1, 0), _sample(0.5, 0.2), _sample(0.1, 0.3)])
    policy_names = set(GATE_METRICS) - {"accuracy", "meanMargin", "calibrationError"}
    assert policy_names <= set(ev.metrics)


def test_refusal_rate_from_labels() -> None:
    assert refusal_rate([None, None]) is None
    assert refusal_rate(["helpful", "refusal", "Refused", None]) == pytest.approx(2 / 3)
    ev = evaluate_policy([_sample(1, 0, label="refusal"), _sample(1, 0, label="helpful")])
    assert ev.metrics["refusalRate"] == 0.5 and ev.metrics["referenceRefusalRate"] is None


def test_top_changes_skip_nan_and_ties() -> None:
    samples = [_sample(0.9, 0.1), _sample(0.2, 0.2), _sample(math.nan, 0.1), _sample(0.1, 0.5), _sample(0.6, 0.5)]
    gains, losses = top_changes(samples, 1)
    assert [s.policy_reward for s in gains] == [0.9] and [s.reference_reward for s in losses] == [0.5]


def test_evaluate_policy_rejects_empty() -> None:
    with pytest.raises(ValueError):
        evaluate_policy([])
