"""Server-side printing for the emulated API server: `kubectl get aj` shows the CRD's printer columns.

kubectl asks for `application/json;as=Table;...` and prints the Table the server returns; a real server builds it
from the CRD's `additionalPrinterColumns` (simple JSONPaths; a `date` column becomes an age such as `5m`). The
emulator does the same for the kinds whose CRD it serves; for other kinds it answers plain JSON, and kubectl falls
back to NAME and AGE.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _path_value(obj: Mapping[str, Any], json_path: str) -> Any:
    """The value at a dotted JSONPath (`.status.progress.percent`), or None (printed as `<none>` by kubectl)."""
    value: Any = obj
    for part in json_path.lstrip(".").split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _age(timestamp: Any, now: datetime) -> str:
    """The server's rendering of a `date` column: kubectl's short duration since then (5m, 3h, 2d)."""
    from align_operator.cli.cluster import human_duration, parse_time
    when = parse_time(timestamp)
    return human_duration((now - when).total_seconds()) if when else "<unknown>"


def _cell(obj: Mapping[str, Any], column: Mapping[str, Any], now: datetime) -> Any:
    value = _path_value(obj, column["jsonPath"])
    if value is None:
        return None
    if column.get("type") == "date":
        return _age(value, now)
    if column.get("type") == "string" and not isinstance(value, str):
        return str(value)
    return value


def as_table(doc: Mapping[str, Any], columns: Sequence[Mapping[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of one object or a list, with a Name column first, as kube-apiserver builds it."""
    now = now or datetime.now(timezone.utc)
    items = list(doc.get("items") or []) if str(doc.get("kind", "")).endswith("List") else [doc]
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                     "priority": c.get("priority", 0), "description": c.get("description", "")} for c in columns]
    rows = [{"cells": [item.get("metadata", {}).get("name"), *(_cell(item, c, now) for c in columns)],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": item.get("metadata", {})}} for item in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str((doc.get("metadata") or {}).get("resourceVersion", ""))},
            "columnDefinitions": definitions, "rows": rows}


def printer_columns(crd: Mapping[str, Any]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(group, version, plural) -> the printer columns of that CRD version."""
    spec = crd["spec"]
    return {(spec["group"], v["name"], spec["names"]["plural"]): list(v.get("additionalPrinterColumns") or [])
            for v in spec["versions"]}
