"""Pipelines without a workflow engine: job://<name> references wait for, then read, another job's artifacts;
job://<name>@<step> reads the checkpoint it kept at that step (status.checkpoints) as soon as it is listed; job://<name>
of a job with spec.promote reads the promoted adapter once it is published."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from align_api.constants import ConditionType, Phase

from .status import promotion


@dataclass
class Resolution:
    """Where a job's upstream references stand."""

    resolved: dict[str, str] = field(default_factory=dict)   # "job://name" -> artifact URI
    waiting: list[str] = field(default_factory=list)          # upstream names not finished (or not created yet)
    failed: list[str] = field(default_factory=list)           # "name: why" for upstreams that cannot deliver

    @property
    def ready(self) -> bool:
        return not self.waiting and not self.failed


def upstream_name(ref: str) -> str:
    """The AlignmentJob a reference names ("sft" of "sft@200")."""
    return ref.split("@", 1)[0]


def _checkpoint(result: Resolution, ref: str, obj: Mapping[str, Any] | None, fields: str) -> None:
    name, step = upstream_name(ref), int(ref.split("@", 1)[1])
    status = (obj or {}).get("status") or {}
    kept = {c.get("step"): c for c in status.get("checkpoints") or []}
    if step in kept and kept[step].get("uri"):
        result.resolved[f"job://{ref}"] = kept[step]["uri"]
    elif step in kept:
        result.failed.append(f"upstream job {name!r} ({fields}) keeps checkpoint {step} in its pod only (an "
                             "emptyDir); give it spec.checkpoints.volume to start other jobs from its checkpoints")
    elif obj is not None and status.get("phase") in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
        result.failed.append(f"upstream job {name!r} ({fields}) did not keep a checkpoint at step {step} (kept: "
                             + (", ".join(str(s) for s in sorted(kept)) or "none") + ")")
    else:
        result.waiting.append(ref)


def _promoted(result: Resolution, name: str, obj: Mapping[str, Any], fields: str) -> None:
    """An upstream that promotes a checkpoint (spec.promote): its adapter is the promoted one, once published
    (whatever its final phase: a cancelled job's promoted checkpoint is a result); never the last step's."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    step = promotion.asked(spec)
    published = status.get("promotion") or {}
    if published.get("step") == step and published.get("adapter"):
        result.resolved[f"job://{name}"] = published["adapter"]
    elif promotion.pending(spec, status, (obj.get("metadata") or {}).get("generation")):
        result.waiting.append(name)
    else:
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.PROMOTED), {})
        result.failed.append(f"upstream job {name!r} ({fields}) could not promote checkpoint {step}: "
                             f"{cond.get('reason')}: {cond.get('message')}")


def resolve(refs: Mapping[str, str], upstreams: Mapping[str, Mapping[str, Any] | None]) -> Resolution:
    """`refs`: {field path: upstream name, or name@step} (spec.upstream_jobs()); `upstreams`: {that: AlignmentJob
    or None}."""
    result = Resolution()
    for name in dict.fromkeys(refs.values()):
        obj = upstreams.get(name)
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        fields = ", ".join(sorted(path for path, ref in refs.items() if ref == name))
        if "@" in name:
            _checkpoint(result, name, obj, fields)
        elif obj is not None and promotion.asked(obj.get("spec") or {}) is not None:
            _promoted(result, name, obj, fields)
        elif obj is None or phase not in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
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
