"""Reward-model evaluation: accuracy, calibration, length buckets and the length-bias flag on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align_trainer.evaluation.reward_stats import (Pair, accuracy, calibration, evaluate_reward_model, length_buckets,
                                                   prefers_longer_rate, within_group_length_correlation)


def _pair(c: float, r: float, cl: int = 10, rl: int = 10) -> Pair:
    return Pair(prompt="q", chosen="c" * cl, rejected="r" * rl, chosen_reward=c, rejected_reward=r,
                chosen_length=cl, rejected_length=rl)


def test_accuracy_counts_ties_half() -> None:
    assert accuracy(np.array([1.0, -1.0, 0.0, 2.0])) == pytest.approx(0.625)


def test_calibration_of_a_calibrated_model_is_small() -> None:
    # margins drawn so that P(correct | margin) = sigmoid(|margin|): a perfectly calibrated BT model.
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 4, 20000)
    correct = rng.uniform(size=size.size) < 1 / (1 + np.exp(-size))
    margins = np.where(correct, size, -size)
    ece, table = calibration(margins)
    assert ece < 0.02
    assert sum(row["n"] for row in table) == margins.size


def test_calibration_of_an_overconfident_model_is_large() -> None:
    margins = np.array([8.0] * 60 + [-8.0] * 40)  # says 99.97 % sure, right 60 % of the time
    ece, _ = calibration(margins)
    assert ece == pytest.approx(0.9997 - 0.6, abs=1e-3)


def test_length_buckets_and_prefers_longer() -> None:
    pairs = [_pair(2, 1, 20, 10), _pair(2, 1, 20, 10), _pair(1, 2, 5, 20), _pair(1, 0, 10, 10)]
    buckets = length_buckets(pairs)
    assert buckets["chosen longer"] == {"n": 2, "accuracy": 1.0}
    assert buckets["chosen shorter"] == {"n": 1, "accuracy": 0.0}
    assert buckets["similar length"] == {"n": 1, "accuracy": 1.0}
    assert prefers_longer_rate(pairs) == 1.0


def _length_biased(rng: np.random.Generator, n: int, chosen_longer_only: bool) -> list[Pair]:
    """A reward model that scores length only, on pairs whose chosen answer is longer (or either way)."""
    pairs = []
    for i in range(n):
        a, b = int(rng.integers(5, 60)), int(rng.integers(5, 60))
        if chosen_longer_only or i % 2 == 0:
            cl, rl = max(a, b) + 1, min(a, b)
        else:
            cl, rl = min(a, b), max(a, b) + 1
        pairs.append(_pair(0.05 * cl + rng.normal(0, 0.1), 0.05 * rl + rng.normal(0, 0.1), cl, rl))
    return pairs


def _content_based(rng: np.random.Generator, n: int) -> list[Pair]:
    """A reward model that scores content (right 85 % of the time) whatever the lengths."""
    pairs = []
    for _ in range(n):
        cl, rl = int(rng.integers(5, 60)), int(rng.integers(5, 60))
        quality = rng.normal(1.0, 0.9)
        pairs.append(_pair(quality + rng.normal(0, 0.1), rng.normal(0, 0.1), cl, rl))
    return pairs


def test_length_bias_flagged_by_bucket_gap() -> None:
    ev = evaluate_reward_model(_length_biased(np.random.default_rng(0), 200, chosen_longer_only=False))
    buckets = ev.details["lengthBuckets"]
    assert buckets["chosen longer"]["accuracy"] > 0.9 and buckets["chosen shorter"]["accuracy"] < 0.1
    assert ev.details["lengthBiasFlag"] and ev.metrics["lengthBias"] == 1.0
    assert any("when the chosen answer is longer" in r for r in ev.details["lengthBiasReasons"])


def test_length_bias_flagged_when_chosen_is_always_longer() -> None:
    # The bucket test has no "chosen shorter" pairs here; the within-label correlation still sees it.
    pairs = _length_biased(np.random.default_rng(1), 200, chosen_longer_only=True)
    ev = evaluate_reward_model(pairs)
    assert ev.metrics["accuracy"] > 0.95  # looks excellent...
    assert ev.details["lengthBuckets"]["chosen shorter"]["n"] == 0
    assert within_group_length_correlation(pairs) > 0.8
    assert ev.details["lengthBiasFlag"]  # ...but it is only counting tokens


def test_content_model_is_not_flagged() -> None:
    ev = evaluate_reward_model(_content_based(np.random.default_rng(2), 300))
    assert 0.75 < ev.metrics["accuracy"] < 0.95
    assert not ev.details["lengthBiasFlag"] and ev.metrics["lengthBias"] == 0.0
    assert abs(ev.details["withinGroupLengthSpearman"]) < 0.2


def test_evaluate_reward_model_numbers_and_worst() -> None:
    pairs = [_pair(2, 1), _pair(3, 1), _pair(0, 1), _pair(math.nan, 1)]
    ev = evaluate_reward_model(pairs, worst_k=2)
    assert ev.metrics["accuracy"] == pytest.approx(2 / 3)
    assert ev.metrics["meanMargin"] == pytest.approx((1 + 2 - 1) / 3)
    assert ev.details["unscored"] == 1 and ev.metrics["samples"] == 4
    assert [p.margin for p in ev.worst] == [-1]
    assert set(ev.metrics) >= {"accuracy", "meanMargin", "calibrationError"}
