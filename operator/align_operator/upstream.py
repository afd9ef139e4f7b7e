"""Pipelines without a workflow engine: job://<name> references wait for, then read, another job's artifacts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from align_api.constants import Phase


@dataclass
class Resolution:
    """Where a job's upstream references stand."""

    resolved: dict[str, str] = field(default_factory=dict)   # "job://name" -> artifact URI
    waiting: list[str] = field(default_factory=list)          # upstream names not finished (or not created yet)
    failed: list[str] = field(default_factory=list)           # "name: why" for upstreams that cannot deliver

    @property
    def ready(self) -> bool:
        return not self.waiting and not self.failed


def resolve(refs: Mapping[str, str], upstreams: Mapping[str, Mapping[str, Any] | None]) -> Resolution:
    """`refs`: {field path: upstream name} (spec.upstream_jobs()); `upstreams`: {name: AlignmentJob or None}."""
    result = Resolution()
    for name in dict.fromkeys(refs.values()):
        obj = upstreams.get(name)
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        fields = ", ".join(sorted(path for path, ref in refs.items() if ref == name))
        if obj is None or phase not in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
            result.waiting.append(name)
        elif phase in (Phase.FAILED, Phase.CANCELLED):
            error = status.get("lastError") or {}
            result.failed.append(f"upstream job {name!r} ({fields}) {'failed' if phase == Phase.FAILED else 'was cancelled'}"
                                 + (f": {error.get('reason')}: {error.get('message', '')}".rstrip(": ") if error else ""))
        else:
            adapter = (status.get("artifacts") or {}).get("adapter")
            if adapter:
                result.resolved[f"job://{name}"] = adapter
            else:
                result.failed.append(f"upstream job {name!r} ({fields}) succeeded but recorded no adapter artifact")
    return result
