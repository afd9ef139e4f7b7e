"""Reward-model evaluation on held-out preference pairs: is it right, calibrated, and not just counting tokens?

A reward model r scores (prompt, answer); for a pair the Bradley-Terry probability that `chosen` is preferred
is sigmoid(r(chosen) - r(rejected)) = sigmoid(margin). Everything here is pure numpy on those scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .stats import finite_or_none, sigmoid, spearman, summary

#: Relative length difference (chosen - rejected) / longer, beyond which a pair is "chosen longer/shorter".
SIMILAR_LENGTH = 0.1
#: Length-bias flag thresholds (see `length_bias`).
BUCKET_GAP = 0.2
PREFERS_LONGER = 0.85
WITHIN_CORRELATION = 0.5
MIN_BUCKET = 5


@dataclass(frozen=True)
class Pair:
    """One held-out pair scored by the reward model."""

    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float
    chosen_length: int
    rejected_length: int

    @property
    def margin(self) -> float:
        return self.chosen_reward - self.rejected_reward

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(chosen_reward=finite_or_none(self.chosen_reward), rejected_reward=finite_or_none(self.rejected_reward),
                   margin=finite_or_none(self.margin))
        return out


@dataclass
class RewardModelEvaluation:
    metrics: dict[str, float | None]
    details: dict[str, Any]
    worst: list[Pair]


def accuracy(margins: np.ndarray) -> float:
    """Share of pairs ranked right; an exact tie counts half (the model expressed no preference)."""
    if margins.size == 0:
        return math.nan
    return float((np.sum(margins > 0) + 0.5 * np.sum(margins == 0)) / margins.size)


def calibration(margins: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of the Bradley-Terry probability, as a binary classifier.

    Every pair's label is "chosen wins", so we score the model's *prediction* instead: it predicts the
    answer with the higher reward, with confidence max(p, 1-p) where p = sigmoid(margin); it is correct
    when margin > 0. ECE = sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width confidence bins
    in [0.5, 1] (Guo et al., 2017, eq. 3).
    """
    margins = margins[np.isfinite(margins)]
    if margins.size == 0:
        return math.nan, []
    p = sigmoid(margins)
    conf = np.maximum(p, 1 - p)
    correct = (margins > 0).astype(float) + 0.5 * (margins == 0)
    edges = np.linspace(0.5, 1.0, bins + 1)
    table: list[dict[str, float]] = []
    ece = 0.0
    for i in range(bins):
        inside = (conf >= edges[i]) & ((conf < edges[i + 1]) if i < bins - 1 else (conf <= edges[i + 1]))
        n = int(inside.sum())
        if n == 0:
            continue
        acc, mean_conf = float(correct[inside].mean()), float(conf[inside].mean())
        ece += n / margins.size * abs(acc - mean_conf)
        table.append({"low": float(edges[i]), "high": float(edges[i + 1]), "n": n, "confidence": mean_conf, "accuracy": acc})
    return ece, table


def length_buckets(pairs: Sequence[Pair], similar: float = SIMILAR_LENGTH) -> dict[str, dict[str, float | int | None]]:
    """Accuracy split by which answer of the pair is longer."""
    groups: dict[str, list[float]] = {"chosen shorter": [], "similar length": [], "chosen longer": []}
    for pair in pairs:
        longer = max(pair.chosen_length, pair.rejected_length, 1)
        rel = (pair.chosen_length - pair.rejected_length) / longer
        key = "chosen longer" if rel > similar else "chosen shorter" if rel < -similar else "similar length"
        groups[key].append(pair.margin)
    return {key: {"n": len(m), "accuracy": finite_or_none(accuracy(np.asarray(m, dtype=float)))}
            for key, m in groups.items()}


def prefers_longer_rate(pairs: Sequence[Pair]) -> float:
    """How often the model gives the longer answer of a pair the higher reward (pairs of equal length skipped)."""
    votes = [(p.chosen_reward > p.rejected_reward) == (p.chosen_length > p.rejected_length)
             for p in pairs if p.chosen_length != p.rejected_length and p.chosen_reward != p.rejected_reward
             and math.isfinite(p.margin)]
    return sum(votes) / len(votes) if votes else math.nan


def within_group_length_correlation(pairs: Sequence[Pair]) -> float:
    """Mean Spearman correlation of reward with length inside the chosen answers and inside the rejected ones.

    Pooling chosen and rejected would confound length with the label when the data's chosen answers are
    longer; within one label, a reward that rises with length is paying for length itself.
    """
    rhos = [spearman([p.chosen_length for p in pairs], [p.chosen_reward for p in pairs]),
            spearman([p.rejected_length for p in pairs], [p.rejected_reward for p in pairs])]
    rhos = [r for r in rhos if math.isfinite(r)]
    return float(np.mean(rhos)) if rhos else math.nan


def length_bias(buckets: dict[str, dict[str, Any]], prefers_longer: float, within_rho: float) -> tuple[bool, list[str]]:
    """Flag a reward model that pays for length. Either sign is enough:

    - by bucket: accuracy when the chosen answer is longer exceeds accuracy when it is shorter by BUCKET_GAP
      (needs MIN_BUCKET pairs in each; the honest test, when the eval data has both kinds of pairs);
    - by behaviour: it prefers the longer answer in >= PREFERS_LONGER of pairs and, within chosen and within
      rejected answers, its reward rises with length (Spearman >= WITHIN_CORRELATION). This catches a model
      whose eval pairs, like its training pairs, always have the longer answer chosen.
    """
    reasons: list[str] = []
    longer, shorter = buckets["chosen longer"], buckets["chosen shorter"]
    if longer["n"] >= MIN_BUCKET and shorter["n"] >= MIN_BUCKET and longer["accuracy"] is not None \
            and shorter["accuracy"] is not None and longer["accuracy"] - shorter["accuracy"] >= BUCKET_GAP:
        reasons.append(f"accuracy {longer['accuracy']:.2f} when the chosen answer is longer vs "
                       f"{shorter['accuracy']:.2f} when it is shorter")
    if math.isfinite(prefers_longer) and math.isfinite(within_rho) and prefers_longer >= PREFERS_LONGER \
            and within_rho >= WITHIN_CORRELATION:
        reasons.append(f"prefers the longer answer in {prefers_longer:.0%} of pairs and reward rises with length "
                       f"within chosen/rejected answers (Spearman {within_rho:.2f})")
    return bool(reasons), reasons


def evaluate_reward_model(pairs: Sequence[Pair], *, bins: int = 10, worst_k: int = 5) -> RewardModelEvaluation:
    """Accuracy, chosen/rejected/margin distributions, calibration, length buckets and the length-bias flag."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    margins = np.asarray([p.margin for p in pairs], dtype=float)
    finite = margins[np.isfinite(margins)]
    ece, table = calibration(finite, bins)
    buckets = length_buckets([p for p in pairs if math.isfinite(p.margin)])
    longer_rate = prefers_longer_rate(pairs)
    within = within_group_length_correlation(pairs)
    flagged, reasons = length_bias(buckets, longer_rate, within)
    chosen_longer_in_data = float(np.mean([p.chosen_length > p.rejected_length for p in pairs]))
    metrics = {k: finite_or_none(v) for k, v in {
        "accuracy": accuracy(finite), "meanMargin": float(finite.mean()) if finite.size else math.nan,
        "calibrationError": ece, "samples": float(len(pairs)),
        "lengthBias": 1.0 if flagged else 0.0, "prefersLongerRate": longer_rate,
    }.items()}
    details = {
        "chosenRewardSummary": summary([p.chosen_reward for p in pairs]),
        "rejectedRewardSummary": summary([p.rejected_reward for p in pairs]),
        "marginSummary": summary(margins),
        "calibrationBins": table,
        "lengthBuckets": buckets,
        "withinGroupLengthSpearman": finite_or_none(within),
        "chosenLongerInData": chosen_longer_in_data,
        "lengthBiasFlag": flagged,
        "lengthBiasReasons": reasons,
        "unscored": int(margins.size - finite.size),
    }
    worst = sorted((p for p in pairs if math.isfinite(p.margin)), key=lambda p: p.margin)[:worst_k]
    return RewardModelEvaluation(metrics=metrics, details=details, worst=[p for p in worst if p.margin <= 0])
