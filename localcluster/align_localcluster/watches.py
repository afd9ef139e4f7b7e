"""Watch semantics for the emulated API server: label/field selectors and resumable watch streams."""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Mapping
from typing import Any

import kmock


_SELECTOR_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$|^\s*(!?)([\w./-]+)\s*$")


def parse_selector(text: str | None) -> list[tuple[str, str, str | None]]:
    """Equality-based selectors: `a=b,c!=d,e,!f` -> [(key, op, value)] with op in =, !=, exists, !exists."""
    terms: list[tuple[str, str, str | None]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _SELECTOR_TERM.match(part)
        if not match:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=f"unable to parse selector {part!r}")
        if match.group(1):
            terms.append((match.group(1), "!=" if match.group(2) == "!=" else "=", match.group(3)))
        else:
            terms.append((match.group(5), "!exists" if match.group(4) else "exists", None))
    return terms


def selector_matches(terms: list[tuple[str, str, str | None]], values: Mapping[str, Any]) -> bool:
    for key, op, value in terms:
        present = key in values
        if op == "=" and (not present or str(values[key]) != value):
            return False
        if op == "!=" and present and str(values[key]) == value:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True


def _field_values(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    values = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    if "status" in obj and isinstance(obj["status"], dict) and "phase" in obj["status"]:
        values["status.phase"] = obj["status"]["phase"]
    if isinstance(obj.get("spec"), dict) and "nodeName" in obj["spec"]:
        values["spec.nodeName"] = obj["spec"]["nodeName"]
    return values


class RecordingBus(kmock.Bus):  # type: ignore[misc]
    """A watch-event bus that also keeps the recent events by resourceVersion, so a watch that starts at a
    list's resourceVersion replays exactly what happened since (kmock would replay every object)."""

    def __init__(self, versions: itertools.count, size: int = 20000) -> None:
        super().__init__()
        self.versions = versions
        self.deletions = 0  # the garbage collector runs only after something was deleted
        self.history: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=size)

    async def put(self, *items: Any) -> None:
        recorded = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("object"), dict):
                if item.get("type") == "DELETED":  # deletion is a write of its own, as in etcd
                    self.deletions += 1
                    item = {"type": "DELETED", "object": dict(item["object"], metadata=dict(
                        item["object"].get("metadata") or {}, resourceVersion=str(next(self.versions))))}
                self.history.append((_rv(item["object"]), item))
            recorded.append(item)
        await super().put(*recorded)


def _rv(obj: Mapping[str, Any]) -> int:
    raw = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else 0


def _in_scope(request: kmock.Request, namespace: str | None, name: str | None) -> bool:
    return (request.namespace is None or namespace == request.namespace) and \
        (request.name is None or name == request.name)


def _selected(obj: Mapping[str, Any], labels: list[Any], fields: list[Any]) -> bool:
    return selector_matches(labels, obj.get("metadata", {}).get("labels") or {}) and \
        selector_matches(fields, _field_values(obj))
