"""Policy vs reference: the numbers behind `status.evaluation` for generative and preference jobs.

Input: one `Sample` per prompt, holding the policy's and the reference's answers (generated with the same
seed) and their rewards from the same scorer. Output: `PolicyEvaluation`, whose `metrics` use the names of
`align_api.evaluation.GATE_METRICS` so gates and the status read them unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .stats import TIE_TOLERANCE, finite_or_none, length_ratio, mean_ci, pearson, spearman, summary, win_tie_loss

#: Grader labels that count as a refusal when the scorer is a label_model (e.g. labels [helpful, refusal]).
REFUSAL_LABEL = re.compile(r"refus|declin|unsafe_refus|won.?t.?answer", re.I)


@dataclass(frozen=True)
class Sample:
    """One prompt answered by both models and scored by the same scorer."""

    prompt: str
    policy: str
    reference: str
    policy_reward: float
    reference_reward: float
    policy_length: int
    reference_length: int
    policy_label: str | None = None
    reference_label: str | None = None

    @property
    def delta(self) -> float:
        return self.policy_reward - self.reference_reward

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["policy_reward"] = finite_or_none(self.policy_reward)
        out["reference_reward"] = finite_or_none(self.reference_reward)
        out["delta"] = finite_or_none(self.delta)
        return out


@dataclass
class PolicyEvaluation:
    """Everything the report, the status and the gates need."""

    metrics: dict[str, float | None]
    details: dict[str, Any]
    top_gains: list[Sample] = field(default_factory=list)
    top_losses: list[Sample] = field(default_factory=list)
    #: the first prompts in order, whatever their outcome: the report always shows answers side by side, also
    #: when every prompt ties (then gains and losses are empty and these are all a reader can look at)
    examples: list[Sample] = field(default_factory=list)


def refusal_rate(labels: Iterable[str | None], pattern: re.Pattern[str] = REFUSAL_LABEL) -> float | None:
    """Share of answers whose grader label looks like a refusal; None when the scorer gives no labels."""
    given = [label for label in labels if label is not None]
    if not given:
        return None
    return sum(1 for label in given if pattern.search(label)) / len(given)


def top_changes(samples: Sequence[Sample], k: int) -> tuple[list[Sample], list[Sample]]:
    """The k prompts where the policy gained most over the reference, and the k where it lost most.
    Only strict gains (delta > 0) and strict losses (delta < 0) are listed; NaN rewards are skipped."""
    scored = [s for s in samples if math.isfinite(s.delta)]
    ordered = sorted(scored, key=lambda s: s.delta, reverse=True)
    gains = [s for s in ordered if s.delta > 0][:k]
    losses = [s for s in reversed(ordered) if s.delta < 0][:k]
    return gains, losses


def evaluate_policy(samples: Sequence[Sample], *, confidence: float = 0.95, ci_method: str = "bootstrap",
                    top_k: int = 5, seed: int = 0) -> PolicyEvaluation:
    """Win/tie/loss, mean rewards and their delta with a CI, length statistics, refusal rate, top changes."""
    if not samples:
        raise ValueError("no samples to evaluate")
    pol = [s.policy_reward for s in samples]
    ref = [s.reference_reward for s in samples]
    wtl = win_tie_loss(pol, ref)
    # The delta's CI is on paired differences: both answers share a prompt, so pairing removes the
    # prompt-difficulty variance that an unpaired interval would carry.
    delta = mean_ci([s.delta for s in samples], confidence, ci_method, seed=seed)  # type: ignore[arg-type]
    pol_ci = mean_ci(pol, confidence, ci_method, seed=seed)  # type: ignore[arg-type]
    ref_ci = mean_ci(ref, confidence, ci_method, seed=seed)  # type: ignore[arg-type]
    # Win rate's interval: the mean of per-prompt outcomes (1 win, 0.5 tie, 0 loss), resampled like the delta.
    outcomes = [math.nan if not math.isfinite(s.delta) else 1.0 if s.delta > TIE_TOLERANCE
                else 0.0 if s.delta < -TIE_TOLERANCE else 0.5 for s in samples]
    win_ci = mean_ci(outcomes, confidence, ci_method, seed=seed)  # type: ignore[arg-type]
    pol_len = [s.policy_length for s in samples]
    ref_len = [s.reference_length for s in samples]
    # Correlation over every scored answer (both models): a strong positive value means the scorer pays for
    # length. The delta-vs-delta correlation says whether the policy's gains come with longer answers.
    all_len = pol_len + ref_len
    all_reward = pol + ref
    len_delta = [p - r for p, r in zip(pol_len, ref_len)]
    metrics: dict[str, float | None] = {
        "winRate": wtl.win_rate, "tieRate": wtl.tie_rate, "lossRate": wtl.loss_rate,
        "rewardDelta": delta.mean, "rewardDeltaLow": delta.low, "rewardDeltaHigh": delta.high,
        "policyReward": pol_ci.mean, "referenceReward": ref_ci.mean,
        "lengthRatio": length_ratio(pol_len, ref_len),
        "lengthRewardCorrelation": spearman(all_len, all_reward),
        "samples": float(len(samples)),
    }
    refusal = refusal_rate(s.policy_label for s in samples)
    if refusal is not None:
        metrics["refusalRate"] = refusal
        metrics["referenceRefusalRate"] = refusal_rate(s.reference_label for s in samples)
    metrics = {k: finite_or_none(v) for k, v in metrics.items()}
    gains, losses = top_changes(samples, top_k)
    details = {
        "wins": wtl.wins, "ties": wtl.ties, "losses": wtl.losses, "strictWinRate": finite_or_none(wtl.strict_win_rate),
        "confidence": confidence, "ciMethod": ci_method,
        "winRateLow": finite_or_none(win_ci.low), "winRateHigh": finite_or_none(win_ci.high),
        "policyRewardLow": finite_or_none(pol_ci.low), "policyRewardHigh": finite_or_none(pol_ci.high),
        "referenceRewardLow": finite_or_none(ref_ci.low), "referenceRewardHigh": finite_or_none(ref_ci.high),
        "policyRewardSummary": summary(pol), "referenceRewardSummary": summary(ref),
        "policyLengthSummary": summary(pol_len), "referenceLengthSummary": summary(ref_len),
        "lengthRewardPearson": finite_or_none(pearson(all_len, all_reward)),
        "lengthRewardSpearman": finite_or_none(spearman(all_len, all_reward)),
        "lengthDeltaRewardDeltaSpearman": finite_or_none(spearman(len_delta, [s.delta for s in samples])),
        "unscored": int(np.sum(~np.isfinite(np.asarray([s.delta for s in samples], dtype=float)))),
        # identical text explains a tie rate of 1 (the adapter changed nothing the decoding shows) better than
        # equal rewards do
        "identicalAnswers": sum(1 for s in samples if s.policy == s.reference),
    }
    return PolicyEvaluation(metrics=metrics, details=details, top_gains=gains, top_losses=losses,
                            examples=list(samples[:top_k]))
