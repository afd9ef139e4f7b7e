"""Kubernetes Events as alignctl reads them: when each happened, and whether it is about this very object."""

from __future__ import annotations

from typing import Any, Mapping


def timestamp(value: Any) -> float:
    from datetime import datetime

    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def is_about(event: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """Whether `event` is about this very object: its uid when both carry one, else its name and an event time no
    earlier than the object's creation (a hand-made event without a uid)."""
    involved, meta = event.get("involvedObject") or {}, obj.get("metadata") or {}
    if involved.get("name") != meta.get("name"):
        return False
    if involved.get("uid") and meta.get("uid"):
        return involved["uid"] == meta["uid"]
    return event_time(event) >= timestamp(meta.get("creationTimestamp"))


def event_time(event: Mapping[str, Any]) -> float:
    """When an event last happened (events carry one of several timestamps depending on their API)."""
    meta = event.get("metadata") or {}
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return timestamp(event[key])
    return timestamp(meta.get("creationTimestamp"))
