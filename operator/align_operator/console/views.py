"""What the console's pages show, as pure functions of the API objects (no I/O: sources.py reads, server.py serves).

The jobs list pages on the server: the browser gets one page of rows (default 50) and the total, so a namespace
of thousands of jobs costs the browser one page of DOM, never the whole list.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from align_operator.cli.cluster import age, parse_time
from align_operator.client import phase_of
from align_operator.events import event_time

#: The number the jobs list shows per job: the evaluation's headline when there is one, else the training loss.
KEY_METRICS = (("evaluation", "winRate"), ("metrics", "loss"), ("metrics", "eval_loss"), ("metrics", "reward"))
MAX_PAGE = 500
_CHECKPOINT_STEP = re.compile(r"checkpoint-(\d+)/?$")


def key_metric(status: Mapping[str, Any]) -> dict[str, Any] | None:
    for field, key in KEY_METRICS:
        value = (status.get(field) or {}).get(key)
        if value is not None:
            return {"name": key, "value": value}
    return None


def job_row(obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One row of the jobs list."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    progress = status.get("progress") or {}
    error = status.get("lastError") or {}
    return {
        "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
        "labels": dict(meta.get("labels") or {}),
        "phase": phase_of(obj), "algorithm": spec.get("algorithm"),
        "model": (spec.get("model") or {}).get("base"),
        "step": progress.get("step"), "totalSteps": progress.get("totalSteps"), "percent": progress.get("percent"),
        "age": age(meta.get("creationTimestamp"), now), "created": meta.get("creationTimestamp"),
        "keyMetric": key_metric(status),
        "reason": error.get("reason"), "message": error.get("message"),
    }


def page(objs: Iterable[Mapping[str, Any]], *, phase: str = "", offset: int = 0, limit: int = 50,
         now: datetime | None = None) -> dict[str, Any]:
    """{total, offset, limit, phases, items}: rows newest first, filtered by phase (case-insensitive, comma list)."""
    now = now or datetime.now(timezone.utc)
    wanted = {p.strip().lower() for p in phase.split(",") if p.strip()}
    everything = list(objs)
    counts: dict[str, int] = {}
    for obj in everything:
        counts[phase_of(obj)] = counts.get(phase_of(obj), 0) + 1
    chosen = [o for o in everything if not wanted or phase_of(o).lower() in wanted]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    chosen.sort(key=lambda o: (parse_time((o.get("metadata") or {}).get("creationTimestamp")) or epoch,
                               (o.get("metadata") or {}).get("name", "")), reverse=True)
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    return {"total": len(chosen), "offset": offset, "limit": limit, "phases": counts,
            "items": [job_row(o, now) for o in chosen[offset:offset + limit]]}


def timeline(obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Conditions (their last transitions) and events in one list, oldest first."""
    entries: list[tuple[float, dict[str, Any]]] = []
    for cond in (obj.get("status") or {}).get("conditions") or []:
        when = parse_time(cond.get("lastTransitionTime"))
        entries.append((when.timestamp() if when else 0.0, {
            "kind": "condition", "time": cond.get("lastTransitionTime"), "type": cond.get("type"),
            "status": cond.get("status"), "reason": cond.get("reason"), "message": cond.get("message", "")}))
    for event in events:
        involved = event.get("involvedObject") or {}
        entries.append((event_time(event), {
            "kind": "event", "time": event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"),
            "type": event.get("type"), "reason": event.get("reason"), "message": event.get("message", ""),
            "object": f"{involved.get('kind', '')}/{involved.get('name', '')}", "count": event.get("count")}))
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def checkpoints(obj: Mapping[str, Any], metrics_at: Any) -> list[dict[str, Any]]:
    """status.artifacts.checkpoints with the metrics logged at each one's step (`metrics_at(step) -> dict`)."""
    out = []
    for uri in ((obj.get("status") or {}).get("artifacts") or {}).get("checkpoints") or []:
        match = _CHECKPOINT_STEP.search(str(uri))
        step = int(match.group(1)) if match else None
        out.append({"uri": uri, "step": step, "metrics": metrics_at(step) if step is not None else {}})
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"hyperparameters.beta": 0.1, ...}; lists are compared whole (as JSON)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(value, sort_keys=True) if isinstance(value, list) else value}


def spec_diff(specs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The spec fields that differ between jobs: [{field, values: {job: value or None}}], sorted by field."""
    flat = {job: flatten(spec) for job, spec in specs.items()}
    fields = sorted(set().union(*flat.values())) if flat else []
    rows = []
    for field in fields:
        values = {job: f.get(field) for job, f in flat.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            rows.append({"field": field, "values": values})
    return rows


def evaluation_view(status: Mapping[str, Any], document: Mapping[str, Any] | None) -> dict[str, Any]:
    """Summary, gates and samples (each with its gain = policy reward - reference reward) of an evaluation."""
    doc = document or {}
    samples = []
    for i, s in enumerate(doc.get("samples") or []):
        row = dict(s)
        pr, rr = row.get("policy_reward"), row.get("reference_reward")
        row["index"] = i
        row["gain"] = pr - rr if isinstance(pr, (int, float)) and isinstance(rr, (int, float)) else None
        samples.append(row)
    return {"summary": doc.get("status") or status.get("evaluation") or {}, "kind": doc.get("kind"),
            "passed": doc.get("passed"), "gates": doc.get("gates") or [], "context": doc.get("context") or {},
            "samples": samples, "histogram": histogram([s.get("policy_reward") for s in samples],
                                                       [s.get("reference_reward") for s in samples])}


def histogram(policy: list[Any], reference: list[Any], bins: int = 10) -> dict[str, list[float]]:
    """Both models' rewards counted in the same bins (equal widths over their joint range): {centers, policy,
    reference}. One bin when every reward is equal; empty lists without a finite reward."""
    finite = [float(v) for v in policy + reference if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"centers": [], "policy": [], "reference": []}
    low, high = min(finite), max(finite)
    n = bins if high > low else 1
    width = (high - low) / n if high > low else 1.0

    def counts(values: list[Any]) -> list[float]:
        out = [0.0] * n
        for v in values:
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[min(n - 1, int((float(v) - low) / width))] += 1
        return out
    return {"centers": [low + width * (i + 0.5) if high > low else low for i in range(n)],
            "policy": counts(policy), "reference": counts(reference)}
