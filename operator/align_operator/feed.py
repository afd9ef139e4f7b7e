"""One job's events as one time-ordered feed (pure): what `alignctl events` prints.

Kubernetes events of the AlignmentJob itself (matched by involvedObject.uid, so an older object of the same name
does not leak in) and of its children (the trainer Job and its pods, matched by name, because a Job deleted to
suspend on older servers comes back with a new uid). The operator posts the trainer's milestones as events on the
AlignmentJob (phase changes, progress at each quarter, checkpoints, evaluation, budget, pause and resume), so the
same reasons are visible with `kubectl get events`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from align_api import KIND

from .events import event_time, is_about, timestamp


def _time(event: Mapping[str, Any]) -> str:
    """The event's own timestamp, as the server wrote it (for printing; `event_time` orders)."""
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str((event.get("metadata") or {}).get("creationTimestamp") or "")


def belongs(event: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether `event` is about the AlignmentJob `job` or one of its children."""
    involved = event.get("involvedObject") or {}
    if involved.get("kind") == KIND:
        return is_about(event, job)
    trainer = (job.get("status") or {}).get("jobName")
    if not trainer or event_time(event) < timestamp((job.get("metadata") or {}).get("creationTimestamp")):
        return False  # no children yet, or a child of an older object of the same name
    name = str(involved.get("name") or "")
    return (involved.get("kind") == "Job" and name == trainer) or \
        (involved.get("kind") == "Pod" and name.startswith(f"{trainer}-"))


def entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """The feed's record of one event (also its `-o json` line)."""
    involved = event.get("involvedObject") or {}
    return {"time": _time(event), "type": event.get("type") or "Normal", "reason": event.get("reason") or "",
            "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
            "message": event.get("message") or "", "count": int(event.get("count") or 1),
            # which event this is (a repeat updates it in place): its uid, else its name
            "uid": (event.get("metadata") or {}).get("uid") or (event.get("metadata") or {}).get("name") or ""}


def feed(events: Iterable[Mapping[str, Any]], job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The job's events, oldest first."""
    mine = [entry(e) for e in events if belongs(e, job)]
    return sorted(mine, key=lambda e: (timestamp(e["time"]), e["uid"]))


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
