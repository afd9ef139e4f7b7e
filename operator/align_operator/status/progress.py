"""The trainer's Prometheus metrics -> status.progress and status.metrics."""

from __future__ import annotations

import math
from typing import Any, Sequence

from prometheus_client.metrics_core import Metric

PREFIX = "align_trainer_"
PROGRESS_SERIES = {"step", "total_steps", "epoch"}
#: At most this many numbers go to status.metrics (the object stays small; Prometheus has everything).
MAX_METRICS = 24
#: Shown first when the trainer exports more than MAX_METRICS series.
KEY_METRICS = ("loss", "eval_loss", "learning_rate", "grad_norm", "rewards_margins", "rewards_accuracies",
               "rewards_chosen", "rewards_rejected", "kl", "reward", "tokens_per_second")


#: Series that describe the process or the checkpoints (status/checkpoints.py), not the training; warnings become
#: conditions (status/warnings.py).
SKIPPED = {"up", "checkpoint", "checkpoint_metric", "warning"}


def parse_metrics(families: Sequence[Metric]) -> dict[str, float]:
    """`align_trainer_*` samples by name (families from exposition.parse). The generic `align_trainer_metric{name=...}` series is keyed by its
    `name` label, and series of the eval split get an `eval_` prefix (train and eval losses stay apart)."""
    values: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if not sample.name.startswith(PREFIX) or sample.name.endswith(("_created", "_total_created")):
                continue
            name = sample.name[len(PREFIX):]
            if name in SKIPPED:
                continue
            if name == "metric":
                name = sample.labels.get("name") or name
            if sample.labels.get("split") == "eval" and not name.startswith("eval_"):
                name = f"eval_{name}"
            values.setdefault(name, float(sample.value))
    return values


def key_metrics(values: dict[str, float]) -> dict[str, float | None]:
    """status.metrics: the trainer's numbers without the progress series; NaN/inf become null."""
    names = [n for n in values if n not in PROGRESS_SERIES]
    ordered = [n for n in KEY_METRICS if n in names] + sorted(n for n in names if n not in KEY_METRICS)
    return {name: _finite(values[name]) for name in ordered[:MAX_METRICS]}


def progress(values: dict[str, float], elapsed_seconds: float | None, now: str) -> dict[str, Any] | None:
    """status.progress from the step/total/epoch gauges; ETA from the mean time per step so far."""
    if "step" not in values:
        return None
    step = int(values["step"])
    out: dict[str, Any] = {"step": step, "updatedAt": now}
    total = values.get("total_steps")
    if total is not None and total > 0 and not math.isnan(total):
        out["totalSteps"] = int(total)
        out["percent"] = round(min(100.0, 100.0 * step / total), 1)
        if elapsed_seconds and step > 0:
            out["etaSeconds"] = int(max(0.0, elapsed_seconds / step * (total - step)))
    epoch = values.get("epoch")
    if epoch is not None and not math.isnan(epoch):
        out["epoch"] = round(epoch, 3)
    return out


def completed(previous: dict[str, Any] | None, now: str, total_steps: int | None = None) -> dict[str, Any]:
    """Progress of a job that Succeeded: all steps done (`total_steps` from the trainer's final message)."""
    previous = dict(previous or {})
    total = total_steps or previous.get("totalSteps") or previous.get("step") or 0
    previous.update(step=total, percent=100.0, etaSeconds=0, updatedAt=now)
    if total:
        previous["totalSteps"] = total
    return previous


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value
