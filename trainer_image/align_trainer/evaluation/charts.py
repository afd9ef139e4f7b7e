"""PNG charts for the evaluation report (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # the trainer pod has no display; select before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .policy_stats import Sample  # noqa: E402
from .reward_stats import Pair  # noqa: E402

POLICY_COLOR, REFERENCE_COLOR = "#1f77b4", "#ff7f0e"
CHOSEN_COLOR, REJECTED_COLOR = "#2ca02c", "#d62728"
DPI = 100


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _bins(*groups: np.ndarray, count: int = 20) -> np.ndarray:
    data = np.concatenate([g for g in groups if g.size]) if any(g.size for g in groups) else np.zeros(1)
    low, high = float(data.min()), float(data.max())
    if high - low < 1e-9:  # all equal (e.g. a 0/1 grader that always says 1): centre one visible bin
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, count + 1)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def reward_distributions(samples: Sequence[Sample], path: Path) -> Path:
    pol, ref = _finite([s.policy_reward for s in samples]), _finite([s.reference_reward for s in samples])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = _bins(pol, ref)
    ax.hist(ref, bins=bins, alpha=0.55, color=REFERENCE_COLOR, label=f"reference (mean {ref.mean():.3g})" if ref.size else "reference")
    ax.hist(pol, bins=bins, alpha=0.55, color=POLICY_COLOR, label=f"policy (mean {pol.mean():.3g})" if pol.size else "policy")
    ax.set(title="Reward distribution: policy vs reference", xlabel="reward", ylabel="answers")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reward_vs_length(samples: Sequence[Sample], path: Path, correlation: float | None) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter([s.reference_length for s in samples], [s.reference_reward for s in samples], s=18, alpha=0.7,
               color=REFERENCE_COLOR, label="reference", marker="s")
    ax.scatter([s.policy_length for s in samples], [s.policy_reward for s in samples], s=18, alpha=0.7,
               color=POLICY_COLOR, label="policy")
    rho = "n/a" if correlation is None or not math.isfinite(correlation) else f"{correlation:.2f}"
    ax.set(title=f"Reward vs answer length (Spearman {rho})", xlabel="answer length (tokens)", ylabel="reward")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def win_tie_loss_bars(wins: int, ties: int, losses: int, path: Path) -> Path:
    n = max(wins + ties + losses, 1)
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    left = 0.0
    for label, count, color in (("win", wins, POLICY_COLOR), ("tie", ties, "#9e9e9e"), ("loss", losses, REFERENCE_COLOR)):
        share = count / n
        ax.barh([0], [share], left=left, color=color, label=f"{label} {share:.0%} ({count})")
        if share > 0.06:
            ax.text(left + share / 2, 0, f"{share:.0%}", ha="center", va="center", color="white", fontweight="bold")
        left += share
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set(xlim=(0, 1), yticks=[], title="Policy vs reference on the same prompts", xlabel="share of prompts")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, frameon=False)
    return _save(fig, path)


def policy_charts(samples: Sequence[Sample], details: dict[str, Any], metrics: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        reward_distributions(samples, out / "reward_distributions.png"),
        reward_vs_length(samples, out / "reward_vs_length.png", metrics.get("lengthRewardCorrelation")),
        win_tie_loss_bars(details["wins"], details["ties"], details["losses"], out / "win_tie_loss.png"),
    ]


def chosen_rejected_histograms(pairs: Sequence[Pair], path: Path) -> Path:
    chosen, rejected = _finite([p.chosen_reward for p in pairs]), _finite([p.rejected_reward for p in pairs])
    margins = _finite([p.margin for p in pairs])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    bins = _bins(chosen, rejected)
    left.hist(rejected, bins=bins, alpha=0.55, color=REJECTED_COLOR, label="rejected")
    left.hist(chosen, bins=bins, alpha=0.55, color=CHOSEN_COLOR, label="chosen")
    left.set(title="Rewards of chosen vs rejected answers", xlabel="reward", ylabel="answers")
    left.legend()
    left.grid(alpha=0.3)
    right.hist(margins, bins=_bins(margins), color="#7f7f7f")
    right.axvline(0, color="black", linestyle="--", linewidth=1)
    right.set(title="Margin r(chosen) - r(rejected)", xlabel="margin", ylabel="pairs")
    right.grid(alpha=0.3)
    return _save(fig, path)


def calibration_diagram(table: Sequence[dict[str, float]], ece: float | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0.5, 1.0], [0.5, 1.0], linestyle="--", color="black", linewidth=1, label="perfectly calibrated")
    if table:
        centres = [(row["low"] + row["high"]) / 2 for row in table]
        width = table[0]["high"] - table[0]["low"]
        ax.bar(centres, [row["accuracy"] for row in table], width=width * 0.9, color=POLICY_COLOR, alpha=0.7,
               label="accuracy")
        ax.plot([row["confidence"] for row in table], [row["accuracy"] for row in table], "o", color="black",
                markersize=4, label="mean confidence")
    shown = "n/a" if ece is None else f"{ece:.3f}"
    ax.set(xlim=(0.5, 1.0), ylim=(0, 1.02), title=f"Calibration of sigmoid(margin) (ECE {shown})",
           xlabel="confidence max(p, 1-p)", ylabel="accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def length_bucket_bars(buckets: dict[str, dict[str, Any]], path: Path, flagged: bool) -> Path:
    names = list(buckets)
    acc = [buckets[k]["accuracy"] if buckets[k]["accuracy"] is not None else 0.0 for k in names]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bars = ax.bar(names, acc, color=[REJECTED_COLOR, "#9e9e9e", CHOSEN_COLOR])
    for bar, key in zip(bars, names):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, f"n={buckets[key]['n']}", ha="center")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set(ylim=(0, 1.1), ylabel="accuracy",
           title="Accuracy by length of chosen vs rejected" + (" — LENGTH BIAS" if flagged else ""))
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def reward_model_charts(pairs: Sequence[Pair], details: dict[str, Any], metrics: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        chosen_rejected_histograms(pairs, out / "rm_rewards.png"),
        calibration_diagram(details["calibrationBins"], metrics.get("calibrationError"), out / "rm_calibration.png"),
        length_bucket_bars(details["lengthBuckets"], out / "rm_length_buckets.png", details["lengthBiasFlag"]),
    ]
