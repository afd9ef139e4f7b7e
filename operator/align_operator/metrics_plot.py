"""metrics.jsonl -> one report-quality PNG and a terminal sparkline summary. Pure apart from the file I/O.

The trainer appends one JSON object per logged step (`step`, `epoch`, `loss`, `learning_rate`, `grad_norm`,
`rewards/margins`, `rewards/accuracies`, `objective/kl`, `tokens_per_second`, `eval_*`, ...). Any key may be
missing (algorithms log different things); NaN and Infinity are kept and shown, not dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

#: (panel title, y label, [(series label, candidate keys in order of preference)]). A panel is drawn when
#: one of its series has data; the first key present wins for each series.
PANELS: tuple[tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("Loss", "loss", (("train", ("loss", "train/loss", "train_loss")), ("eval", ("eval_loss", "eval/loss")))),
    ("Reward margin (chosen - rejected)", "margin",
     (("train", ("rewards/margins",)), ("eval", ("eval_rewards/margins",)))),
    ("Preference accuracy", "accuracy",
     (("train", ("rewards/accuracies", "accuracy")), ("eval", ("eval_rewards/accuracies", "eval_accuracy")))),
    ("Reward", "reward", (("train", ("reward", "objective/rlhf_reward", "objective/scores", "rewards/mean")),
                          ("eval", ("eval_reward",)))),
    ("KL to reference", "KL", (("train", ("objective/kl", "kl", "rewards/kl")),)),
    ("Learning rate", "lr", (("train", ("learning_rate", "lr")),)),
    ("Throughput", "tokens / s", (("train", ("tokens_per_second", "train_tokens_per_second")),)),
    ("Gradient norm", "norm", (("train", ("grad_norm",)),)),
)
SPARK = "▁▂▃▄▅▆▇█"
NAN_MARK = "×"


@dataclass(frozen=True)
class Series:
    key: str
    steps: list[float]
    values: list[float]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]


@dataclass(frozen=True)
class Metrics:
    records: list[dict[str, Any]]
    skipped_lines: int = 0


def read_metrics(path: Path) -> Metrics:
    """Every parseable JSON object line; a torn last line (the trainer is still writing) is skipped."""
    records, skipped = [], 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)  # Python's json reads NaN and Infinity, as the trainer writes them
            except ValueError:
                skipped += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
    return Metrics(records, skipped)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return None


def series(records: Iterable[Mapping[str, Any]], key: str) -> Series:
    """One metric over steps; records without a step count as the next one."""
    steps, values = [], []
    last_step = 0.0
    for record in records:
        step = _number(record.get("step", record.get("global_step")))
        last_step = step if step is not None else last_step + 1
        value = _number(record.get(key))
        if value is not None:
            steps.append(last_step)
            values.append(value)
    return Series(key, steps, values)


def panels(records: list[Mapping[str, Any]]) -> list[tuple[str, str, list[tuple[str, Series]]]]:
    """The panels that have data, each with its labelled series."""
    present = {key for record in records for key in record}
    out = []
    for title, ylabel, candidates in PANELS:
        lines = []
        for label, keys in candidates:
            key = next((k for k in keys if k in present), None)
            if key is not None:
                found = series(records, key)
                if found.values:
                    lines.append((label, found))
        if lines:
            out.append((title, ylabel, lines))
    return out


def sparkline(values: list[float], width: int = 32) -> str:
    """Unicode bars of `values` squeezed into `width` buckets (bucket means); NaN/Inf buckets show ×."""
    if not values:
        return ""
    buckets: list[list[float]] = [[] for _ in range(min(width, len(values)))]
    for index, value in enumerate(values):
        buckets[index * len(buckets) // len(values)].append(value)
    means = [sum(b) / len(b) if all(math.isfinite(v) for v in b) else math.nan for b in buckets]
    finite = [m for m in means if math.isfinite(m)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = high - low
    chars = []
    for mean in means:
        if not math.isfinite(mean):
            chars.append(NAN_MARK)
        else:
            chars.append(SPARK[int((mean - low) / span * (len(SPARK) - 1)) if span else len(SPARK) // 2])
    return "".join(chars)


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
    return f"{value:.4g}"


def summary(records: list[Mapping[str, Any]], width: int = 32) -> list[list[str]]:
    """Rows of METRIC, STEPS, FIRST, LAST, MIN, MAX, TREND for every plotted series."""
    rows = []
    for _title, _ylabel, lines in panels(records):
        for _label, found in lines:
            finite = found.finite
            rows.append([found.key, str(len(found.values)), fmt(found.values[0]), fmt(found.values[-1]),
                         fmt(min(finite)) if finite else "", fmt(max(finite)) if finite else "",
                         sparkline(found.values, width)])
    return rows


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over finite neighbours (no lag, unlike an EMA); NaN where none are finite."""
    half = window // 2
    out = []
    for index in range(len(values)):
        near = [v for v in values[max(0, index - half):index + half + 1] if math.isfinite(v)]
        out.append(sum(near) / len(near) if near else math.nan)
    return out


#: Panels whose values are noisy per step; a smoothed line helps reading them (not the learning rate).
NOISY = {"Loss", "Reward margin (chosen - rejected)", "Preference accuracy", "Reward", "KL to reference",
         "Gradient norm"}
SMOOTH_ABOVE = 50


def render_png(records: list[Mapping[str, Any]], path: Path, *, title: str, dpi: int = 150) -> Path:
    """One figure, a panel per metric family, written to `path` (parent directories created)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    found = panels(records)
    if not found:
        raise ValueError("no plottable metrics (expected keys such as loss, rewards/margins, learning_rate)")
    cols = 3 if len(found) > 4 else 2 if len(found) > 1 else 1
    rows = math.ceil(len(found) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False, constrained_layout=True)
    colours = {"train": "#1f77b4", "eval": "#d62728"}
    for ax, (panel_title, ylabel, lines) in zip(axes.flat, found):
        for label, data in lines:
            colour = colours.get(label, None)
            smoothed = len(data.values) > SMOOTH_ABOVE and panel_title in NOISY
            ax.plot(data.steps, data.values, color=colour, alpha=0.35 if smoothed else 0.95, linewidth=1.2,
                    marker="o" if len(data.values) <= 12 else None, markersize=3,
                    label=f"{label} (raw)" if smoothed else label)
            if smoothed:
                window = max(5, len(data.values) // 20 | 1)
                ax.plot(data.steps, smooth(data.values, window), color=colour, linewidth=2,
                        label=f"{label} (mean of {window})")
            bad = [s for s, v in zip(data.steps, data.values) if not math.isfinite(v)]
            for step in bad:  # NaN/Inf must stay visible: a red line where the value broke
                ax.axvline(step, color="red", linestyle=":", linewidth=1)
            if bad:
                ax.text(0.02, 0.95, f"{len(bad)} non-finite", transform=ax.transAxes, color="red", va="top", fontsize=8)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if panel_title == "Learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(lines) > 1 or (panel_title in NOISY and any(len(d.values) > SMOOTH_ABOVE for _, d in lines)):
            ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(found):]:
        ax.set_visible(False)
    steps = max((max(d.steps) for _, _, lines in found for _, d in lines if d.steps), default=0)
    fig.suptitle(f"{title}  ·  {int(steps)} steps", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
