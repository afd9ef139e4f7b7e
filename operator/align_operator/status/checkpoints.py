"""status.checkpoints: the trainer's kept checkpoints (pure), from its /metrics while it runs
(`align_trainer_checkpoint{step}` = save time, `align_trainer_checkpoint_metric{step,name}`) and from its success
message at the end (`checkpointIndex`). Each gets the URI it can be read from: on the checkpoint volume; an
emptyDir's go with the pod, so they have none."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from prometheus_client.metrics_core import Metric

SERIES = "align_trainer_checkpoint"
METRIC_SERIES = "align_trainer_checkpoint_metric"


def parse_index(families: Sequence[Metric]) -> list[dict[str, Any]]:
    """The records in a /metrics exposition (families from exposition.parse), oldest first."""
    records: dict[int, dict[str, Any]] = {}
    for family in families:
        for sample in family.samples:
            step = sample.labels.get("step", "")
            if not step.isdigit():
                continue
            if sample.name == SERIES:
                saved = datetime.fromtimestamp(sample.value, timezone.utc).replace(microsecond=0)
                records.setdefault(int(step), {"step": int(step)})["time"] = \
                    saved.isoformat().replace("+00:00", "Z")
            elif sample.name == METRIC_SERIES and sample.labels.get("name"):
                name = sample.labels["name"]
                record = records.setdefault(int(step), {"step": int(step)})
                record.setdefault("evaluation" if name.startswith("eval_") else "metrics", {})[name] = sample.value
    return [records[step] for step in sorted(records) if "time" in records[step]]


def uri(spec: Mapping[str, Any], name: str, step: int) -> str | None:
    volume = (spec.get("checkpoints") or {}).get("volume")
    return f"pvc://{volume}/{name}/checkpoints/checkpoint-{step}" if volume else None


def listed(records: Iterable[Mapping[str, Any]], spec: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """status.checkpoints from the trainer's records."""
    out = []
    for record in records:
        step = int(record["step"])
        item: dict[str, Any] = {"step": step, "time": record.get("time"),
                                "metrics": dict(record.get("metrics") or {})}
        if record.get("evaluation"):
            item["evaluation"] = dict(record["evaluation"])
        location = uri(spec, name, step)
        if location:
            item["uri"] = location
        out.append(item)
    return sorted(out, key=lambda i: i["step"])


def new_steps(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Checkpoints in `after` that `before` did not list (a CheckpointSaved event each)."""
    known = {c.get("step") for c in before.get("checkpoints") or []}
    return [c for c in after.get("checkpoints") or [] if c.get("step") not in known]


__all__ = ["listed", "new_steps", "parse_index", "uri"]
