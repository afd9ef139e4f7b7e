"""What a job's trainer pods used, and its budget (pure).

Usage is the pods' running time (their container's `startedAt` to `finishedAt`, from the API server) times the
GPUs each requests; the rank-0 pod's running time is the wall clock. Pods are deleted on suspend, so their time
is kept in status: each running pod has an entry (`running`: uid, GPUs, start, last seen) that is folded into
`settled` seconds when it ends or disappears (`counted` lists the ended pods the server still holds, so that
none is counted twice). Both are written to the object, so an operator restart continues
the account from the API server; a pod deleted while no operator ran counts up to when it was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

GPU = "nvidia.com/gpu"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
#: The fraction of a budget at which a BudgetWarning event is posted.
WARN_AT = 0.8


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod requests (limits, which is where GPUs are set; requests otherwise)."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU) or (resources.get("requests") or {}).get(GPU) or 0
        total += int(value)
    return total


def _run_times(pod: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(started, finished) of the pod's first container; finished None while it runs."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state:
            return (state["running"] or {}).get("startedAt"), None
        if "terminated" in state:
            terminated = state["terminated"] or {}
            return terminated.get("startedAt"), terminated.get("finishedAt")
    return None, None


def _seconds(start: str, end: str) -> float:
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return max(0.0, (parse(end) - parse(start)).total_seconds())


#: The ConfigMap in a job's namespace whose data set the namespace's default budgets (docs/operator.md#budgets).
DEFAULTS_CONFIGMAP = "align-defaults"
#: Budget keys, as runPolicy and the ConfigMap's data spell them.
LIMITS = ("maxGpuHours", "maxWallClockMinutes")
JOB_SOURCE = "spec.runPolicy"
NAMESPACE_SOURCE = f"ConfigMap/{DEFAULTS_CONFIGMAP}"


def namespace_limits(configmap: Mapping[str, Any] | None) -> tuple[dict[str, float], list[str]]:
    """({key: limit}, problems) from the namespace's ConfigMap (None: there is none). A value that is not a
    positive number is left out, and named in `problems` (data.<key>, the value)."""
    limits: dict[str, float] = {}
    problems: list[str] = []
    data = (configmap or {}).get("data") or {}
    for key in sorted(data):
        if key not in LIMITS:
            problems.append(f"data.{key}: unknown key (known: {', '.join(LIMITS)})")
            continue
        try:
            value = float(str(data[key]).strip())
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            problems.append(f"data.{key}: {data[key]!r} is not a positive number")
            continue
        limits[key] = value
    return limits, problems


@dataclass(frozen=True)
class Budget:
    max_gpu_hours: float | None = None
    max_wall_clock_minutes: float | None = None
    #: The job requests GPUs; a CPU job's maxGpuHours counts pod-hours.
    gpu_job: bool = True
    #: Where each limit in force came from: {key: JOB_SOURCE or NAMESPACE_SOURCE}.
    sources: Mapping[str, str] | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], defaults: Mapping[str, float] | None = None) -> "Budget":
        """The job's budgets: for each limit, the stricter (smaller) of its runPolicy's and its namespace's
        default; a job can tighten a namespace's limit, never loosen it. A tie is the job's own."""
        run_policy = spec.get("runPolicy") or {}
        gpus = (spec.get("resources") or {}).get("gpusPerNode", 1)
        chosen: dict[str, float] = {}
        sources: dict[str, str] = {}
        for key in LIMITS:
            own, default = run_policy.get(key), (defaults or {}).get(key)
            if own is not None and (default is None or own <= default):
                chosen[key], sources[key] = float(own), JOB_SOURCE
            elif default is not None:
                chosen[key], sources[key] = float(default), NAMESPACE_SOURCE
        return cls(chosen.get("maxGpuHours"), chosen.get("maxWallClockMinutes"), bool(gpus), sources)

    def source(self, key: str) -> str:
        """How a message names a limit: runPolicy.maxGpuHours, or ConfigMap/align-defaults maxGpuHours."""
        where = (self.sources or {}).get(key, JOB_SOURCE)
        return f"runPolicy.{key}" if where == JOB_SOURCE else f"{where} {key}"

    def limits(self) -> list[dict[str, Any]]:
        """status.usage.limits: each limit in force with its source."""
        values = {"maxGpuHours": self.max_gpu_hours, "maxWallClockMinutes": self.max_wall_clock_minutes}
        return [{"name": key, "value": values[key], "source": (self.sources or {}).get(key, JOB_SOURCE)}
                for key in LIMITS if values[key] is not None]


def account(previous: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], now: str,
            budget: Budget) -> dict[str, Any]:
    """status.usage after looking at the pods now (`previous`: the stored status.usage)."""
    previous = dict(previous or {})
    settled = {"gpu": 0.0, "pod": 0.0, "wall": 0.0, **(previous.get("settled") or {})}
    entries = {e["uid"]: dict(e) for e in previous.get("running") or []}
    present = {(pod.get("metadata") or {}).get("uid") for pod in pods}
    # pods already settled that the API server still holds (ended ones stay until their Job goes)
    counted = [uid for uid in previous.get("counted") or [] if uid in present]
    seen: set[str] = set()
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid")
        started, finished = _run_times(pod)
        if not uid or not started or uid in counted:
            continue
        seen.add(uid)
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        entry = entries.get(uid) or {"uid": uid, "gpus": pod_gpus(pod), "start": started,
                                     "rank0": str(annotations.get(INDEX_ANNOTATION, "0")) == "0"}
        entry["until"] = finished or now
        entries[uid] = entry
        if finished is not None:
            entry["ended"] = True
    running = []
    for uid, entry in entries.items():
        if uid in seen and not entry.pop("ended", False):
            running.append(entry)
            continue
        # ended, or gone from the API server (deleted): its time so far is final
        if uid in present:
            counted.append(uid)
        seconds = _seconds(entry["start"], entry["until"])
        settled["gpu"] += seconds * entry["gpus"]
        settled["pod"] += seconds
        settled["wall"] += seconds if entry["rank0"] else 0.0
    totals = dict(settled)
    for entry in running:
        seconds = _seconds(entry["start"], entry["until"])
        totals["gpu"] += seconds * entry["gpus"]
        totals["pod"] += seconds
        totals["wall"] += seconds if entry["rank0"] else 0.0
    usage: dict[str, Any] = {
        "gpuHours": round(totals["gpu"] / 3600, 4), "podHours": round(totals["pod"] / 3600, 4),
        "wallClockMinutes": round(totals["wall"] / 60, 2),
        "settled": {k: round(v, 3) for k, v in settled.items()}, "running": sorted(running, key=lambda e: e["uid"]),
        "counted": sorted(counted)}
    if budget.limits():
        usage["limits"] = budget.limits()
    used = used_fraction(usage, budget)
    if used is not None:
        usage["budgetUsed"] = round(used, 4)
        # warn once per crossing; a raised limit that brings it under 80% re-arms the warning
        usage["warned"] = bool(previous.get("warned")) and used >= WARN_AT
    return usage


def used_fraction(usage: Mapping[str, Any], budget: Budget) -> float | None:
    """The largest fraction of any budget used; None without budgets."""
    fractions = []
    if budget.max_gpu_hours:
        spent = usage.get("gpuHours" if budget.gpu_job else "podHours") or 0.0
        fractions.append(spent / budget.max_gpu_hours)
    if budget.max_wall_clock_minutes:
        fractions.append((usage.get("wallClockMinutes") or 0.0) / budget.max_wall_clock_minutes)
    return max(fractions) if fractions else None


def exhausted(usage: Mapping[str, Any] | None) -> bool:
    return ((usage or {}).get("budgetUsed") or 0.0) >= 1.0


def to_warn(usage: Mapping[str, Any]) -> bool:
    """Whether a BudgetWarning is due now (80% crossed and not yet warned); the caller then sets `warned`."""
    used = usage.get("budgetUsed")
    return used is not None and WARN_AT <= used and not usage.get("warned")


def describe(usage: Mapping[str, Any], budget: Budget) -> str:
    parts = []
    if budget.max_gpu_hours:
        unit = "GPU-hours" if budget.gpu_job else "pod-hours"
        spent = usage.get("gpuHours" if budget.gpu_job else "podHours") or 0.0
        parts.append(f"{spent:.4g} of {budget.max_gpu_hours:g} {unit} ({budget.source('maxGpuHours')})")
    if budget.max_wall_clock_minutes:
        parts.append(f"{usage.get('wallClockMinutes') or 0:.4g} of {budget.max_wall_clock_minutes:g} minutes "
                     f"({budget.source('maxWallClockMinutes')})")
    return "; ".join(parts)


__all__ = ["DEFAULTS_CONFIGMAP", "Budget", "account", "describe", "exhausted", "namespace_limits", "pod_gpus", "to_warn",
           "used_fraction"]
