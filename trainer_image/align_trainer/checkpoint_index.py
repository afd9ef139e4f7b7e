"""The kept checkpoints as records (step, time, training metrics, eval metrics where evaluation ran), derived from
the working directory alone: the `checkpoint-<N>` directories and metrics.jsonl. The trainer exports them as
`align_trainer_checkpoint{step}` (save time) and `align_trainer_checkpoint_metric{step, name}` gauges and in its
success message; the operator lists them in status.checkpoints. A resumed pod exports the same list again."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .metrics import gauge_name

PREFIX = "checkpoint-"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def step_of(path: Path) -> int | None:
    match = _STEP.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: Path) -> list[Path]:
    """checkpoint-<N> directories, oldest first (checkpoints.py, which validates and rotates them, imports these)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p) or 0)

#: Metrics kept per checkpoint (the object stays small): these first, then the others in the order logged.
MAX_METRICS = 8
FIRST = ("loss", "eval_loss", "rewards_margins", "rewards_accuracies", "reward", "kl", "learning_rate", "grad_norm")
_NOT_METRICS = {"time", "step", "epoch"}


def _finite(values: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers under their gauge names (as /metrics spells them: rewards/margins ->
    rewards_margins)."""
    return {gauge_name(k): float(v) for k, v in values.items() if k not in _NOT_METRICS
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _some(values: dict[str, float]) -> dict[str, float]:
    names = [n for n in FIRST if n in values] + [n for n in values if n not in FIRST]
    return {n: values[n] for n in names[:MAX_METRICS]}


def index(checkpoint_dir: Path, metrics_file: Path | None) -> list[dict[str, Any]]:
    """One record per kept checkpoint, oldest first: the newest train metrics logged at or before its step, and
    the eval metrics logged at its step (an evaluation at that checkpoint) if any."""
    kept = [(step_of(p), p) for p in list_checkpoints(checkpoint_dir)]
    if not kept:
        return []
    train: dict[int, dict[str, float]] = {}
    evaluation: dict[int, dict[str, float]] = {}
    steps = {step for step, _ in kept}
    latest: dict[str, float] = {}
    if metrics_file is not None and metrics_file.is_file():
        with metrics_file.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                step = record.get("step")
                numbers = _finite(record)
                if not isinstance(step, int):
                    continue
                evals = {k: v for k, v in numbers.items() if k.startswith("eval_")}
                latest.update({k: v for k, v in numbers.items() if not k.startswith("eval_")})
                for kept_step in steps:
                    if step <= kept_step:
                        train[kept_step] = dict(latest)
                if evals and step in steps:
                    evaluation.setdefault(step, {}).update(evals)
    out = []
    for step, path in kept:
        saved = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(microsecond=0)
        record: dict[str, Any] = {"step": step, "time": saved.isoformat().replace("+00:00", "Z"),
                                  "metrics": _some(train.get(step, {}))}
        if evaluation.get(step):
            record["evaluation"] = _some(evaluation[step])
        out.append(record)
    return out


__all__ = ["index"]
