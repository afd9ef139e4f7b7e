"""One job's events as one time-ordered feed (pure): what `alignctl events` prints.

Kubernetes events of the AlignmentJob itself (matched by involvedObject.uid, so an older object of the same name
does not leak in) and of its children (the trainer Job and its pods, matched by name, because a Job deleted to
suspend on older servers comes back with a new uid). The operator posts the trainer's milestones as events on the
AlignmentJob (phase changes, progress at each quarter, checkpoints, evaluation, budget, pause and resume), so the
same reasons are visible with `kubectl get events`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from align_api import KIND


def _time(event: Mapping[str, Any]) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str((event.get("metadata") or {}).get("creationTimestamp") or "")


def _sortable(stamp: str) -> datetime:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def belongs(event: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether `event` is about the AlignmentJob `job` or one of its children."""
    meta = job.get("metadata") or {}
    involved = event.get("involvedObject") or {}
    if involved.get("kind") == KIND:
        return bool(meta.get("uid")) and involved.get("uid") == meta.get("uid")
    trainer = (job.get("status") or {}).get("jobName")
    if not trainer:
        return False
    if _time(event) and meta.get("creationTimestamp") and \
            _sortable(_time(event)) < _sortable(str(meta["creationTimestamp"])):
        return False  # a child of an older object of the same name
    name = str(involved.get("name") or "")
    return (involved.get("kind") == "Job" and name == trainer) or \
        (involved.get("kind") == "Pod" and name.startswith(f"{trainer}-"))


def entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """The feed's record of one event (also its `-o json` line)."""
    involved = event.get("involvedObject") or {}
    return {"time": _time(event), "type": event.get("type") or "Normal", "reason": event.get("reason") or "",
            "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
            "message": event.get("message") or "", "count": int(event.get("count") or 1),
            "uid": (event.get("metadata") or {}).get("uid") or ""}


def feed(events: Iterable[Mapping[str, Any]], job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The job's events, oldest first."""
    mine = [entry(e) for e in events if belongs(e, job)]
    return sorted(mine, key=lambda e: (_sortable(e["time"]), e["uid"]))


def fresh(entries: list[dict[str, Any]], seen: dict[str, tuple[str, int]]) -> list[dict[str, Any]]:
    """The entries not printed yet (new events, or a repeat of one: its count or time moved); updates `seen`."""
    out = []
    for item in entries:
        mark = (item["time"], item["count"])
        if seen.get(item["uid"]) != mark:
            seen[item["uid"]] = mark
            out.append(item)
    return out


__all__ = ["belongs", "entry", "feed", "fresh"]
