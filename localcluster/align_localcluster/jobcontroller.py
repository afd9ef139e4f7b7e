"""The local cluster's Job controller: the part of kube-controller-manager that turns a batch/v1 Job into Pods.

Only what trainer Jobs use: Indexed completion mode (one pod per index, `completions` indexes), `suspend`,
`backoffLimit`, `podFailurePolicy` (onExitCodes and onPodConditions; FailJob, Ignore, Count), `activeDeadlineSeconds`
and `ttlSecondsAfterFinished`. `plan_job` decides (pure); `JobController` applies the decision through the API.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .kube import JOBS, PODS, Client
from .apiserver import now_rfc3339

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
TERMINAL_POD_PHASES = ("Succeeded", "Failed")
#: Seconds between a failed pod and its replacement (the real controller backs off 10s, 20s, ...).
RETRY_DELAY = 0.5


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_true(obj: Mapping[str, Any], kind: str) -> bool:
    cond = condition(obj, kind)
    return bool(cond and cond.get("status") == "True")


def pod_index(pod: Mapping[str, Any]) -> int:
    meta = pod.get("metadata", {})
    raw = (meta.get("annotations") or {}).get(INDEX_KEY) or (meta.get("labels") or {}).get(INDEX_KEY) or "0"
    return int(raw)


def exit_code(pod: Mapping[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", 0))
    return None


def failure_action(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> tuple[str, str]:
    """The podFailurePolicy action for a failed pod: (FailJob | Ignore | Count | FailIndex, why)."""
    for number, rule in enumerate((policy or {}).get("rules") or []):
        on_codes = rule.get("onExitCodes")
        if on_codes:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if on_codes.get("containerName") and status.get("name") != on_codes["containerName"]:
                    continue
                terminated = (status.get("state") or {}).get("terminated") or {}
                code = terminated.get("exitCode")
                if code is None or code == 0:
                    continue
                inside = code in on_codes.get("values", [])
                if inside == (on_codes.get("operator", "In") == "In"):
                    return rule["action"], (f"Container {status.get('name')} for pod {pod['metadata']['namespace']}/"
                                            f"{pod['metadata']['name']} failed with exit code {code} matching "
                                            f"{rule['action']} rule at index {number}")
        for pattern in rule.get("onPodConditions") or []:
            cond = condition(pod, pattern.get("type", ""))
            if cond and cond.get("status") == pattern.get("status", "True"):
                return rule["action"], f"Pod {pod['metadata']['name']} has condition {pattern.get('type')} matching " \
                                       f"{rule['action']} rule at index {number}"
    return "Count", ""


def compress_indexes(indexes: set[int]) -> str:
    """{0,1,2,5} -> "0-2,5" (the Job's status.completedIndexes format)."""
    out, ordered = [], sorted(indexes)
    start = prev = None
    for idx in ordered + [None]:  # type: ignore[list-item]
        if start is None:
            start = prev = idx
        elif idx is not None and idx == prev + 1:  # type: ignore[operator]
            prev = idx
        else:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = idx
    return ",".join(out)


@dataclass
class JobPlan:
    """What the controller does for one Job in one pass."""

    status: dict[str, Any]
    create: list[int] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    remove_job: bool = False


def _set_condition(conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str) -> None:
    for cond in conditions:
        if cond["type"] == kind:
            if cond["status"] != status:
                cond.update(status=status, lastTransitionTime=now_rfc3339())
            cond.update(reason=reason, message=message, lastProbeTime=now_rfc3339())
            return
    conditions.append({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastProbeTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()})


def plan_job(job: Mapping[str, Any], pods: list[Mapping[str, Any]], now: datetime,
             last_failure: datetime | None = None) -> JobPlan:
    """Decide what to do with a Job given its pods (pure)."""
    spec = job.get("spec") or {}
    status = copy.deepcopy(job.get("status") or {})
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    active = [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL_POD_PHASES
              and not p["metadata"].get("deletionTimestamp")]
    plan = JobPlan(status=status)

    if is_true(job, "Complete") or is_true(job, "Failed"):
        plan.delete = [p["metadata"]["name"] for p in active]
        ttl = spec.get("ttlSecondsAfterFinished")
        finished = parse_time(status.get("completionTime")) or parse_time(
            (condition(job, "Failed") or condition(job, "Complete") or {}).get("lastTransitionTime"))
        plan.remove_job = ttl is not None and finished is not None and (now - finished).total_seconds() >= ttl
        return plan

    if spec.get("suspend"):
        plan.delete = [p["metadata"]["name"] for p in active]
        _set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended")
        status["active"] = 0
        status.pop("startTime", None)  # the deadline restarts on resume, as in Kubernetes
        return plan
    if is_true(job, "Suspended"):
        _set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed")
    status.setdefault("startTime", now_rfc3339())

    completions = int(spec.get("completions") or 1)
    succeeded = {pod_index(p) for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"}
    counted_failures, fail_reason = 0, None
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Failed":
            continue
        action, why = failure_action(spec.get("podFailurePolicy"), pod)
        if action in ("FailJob", "FailIndex"):
            fail_reason = ("PodFailurePolicy", why)
        elif action == "Count":
            counted_failures += 1
    status["failed"] = counted_failures
    status["succeeded"] = len(succeeded)
    status["completedIndexes"] = compress_indexes(succeeded)
    status["active"] = len(active)
    status["ready"] = sum(1 for p in active if is_true(p, "Ready"))

    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))
    if fail_reason is None and counted_failures > int(spec.get("backoffLimit", 6)):
        fail_reason = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    if fail_reason is None and deadline and started and (now - started).total_seconds() > deadline:
        fail_reason = ("DeadlineExceeded", "Job was active longer than specified deadline")
    if fail_reason is not None:
        _set_condition(conditions, "FailureTarget", "True", *fail_reason)
        _set_condition(conditions, "Failed", "True", *fail_reason)
        plan.delete = [p["metadata"]["name"] for p in active]
        status["active"] = 0
        return plan

    if len(succeeded) >= completions:
        _set_condition(conditions, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods")
        _set_condition(conditions, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")
        status["completionTime"] = now_rfc3339()
        return plan

    busy = {pod_index(p) for p in active} | succeeded
    parallelism = int(spec.get("parallelism") or completions)
    if last_failure is None or (now - last_failure).total_seconds() >= RETRY_DELAY:
        missing = [i for i in range(completions) if i not in busy]
        plan.create = missing[: max(0, parallelism - len(active))]
    return plan


def render_pod(job: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The pod the Job controller creates for one completion index."""
    meta = job["metadata"]
    template = copy.deepcopy(job["spec"]["template"])
    pod_meta = template.get("metadata") or {}
    labels = dict(pod_meta.get("labels") or {})
    labels.update({"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"],
                   "batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"],
                   INDEX_KEY: str(index)})
    annotations = dict(pod_meta.get("annotations") or {})
    annotations[INDEX_KEY] = str(index)
    spec = template.get("spec") or {}
    spec.setdefault("hostname", f"{meta['name']}-{index}")
    for container in spec.get("containers", []):
        container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {
            "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{meta['name']}-{index}-{secrets.token_hex(3)[:5]}", "namespace": meta["namespace"],
                     "labels": labels, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


class JobController:
    """Applies `plan_job` to every Job, through the API."""

    def __init__(self, client: Client):
        self.client = client
        self._last_failure: dict[str, datetime] = {}
        self._failed_seen: set[str] = set()

    async def sync(self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                by_owner.setdefault(ref.get("uid"), []).append(pod)
            if (pod.get("status") or {}).get("phase") == "Failed" and pod["metadata"]["uid"] not in self._failed_seen:
                self._failed_seen.add(pod["metadata"]["uid"])
                for ref in pod["metadata"].get("ownerReferences") or []:
                    self._last_failure[ref.get("uid")] = datetime.now(timezone.utc)
        for job in jobs:
            if job["metadata"].get("deletionTimestamp"):
                continue
            uid = job["metadata"]["uid"]
            plan = plan_job(job, by_owner.get(uid, []), datetime.now(timezone.utc), self._last_failure.get(uid))
            await self._apply(job, plan)

    async def _apply(self, job: dict[str, Any], plan: JobPlan) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        for pod_name in plan.delete:
            await self.client.delete(PODS, pod_name, ns)
        for index in plan.create:
            await self.client.create(PODS, render_pod(job, index), ns)
        if plan.remove_job:
            await self.client.delete(JOBS, name, ns)
            return
        if _without_probe_times(plan.status) != _without_probe_times(job.get("status") or {}):
            await self.client.patch(JOBS, name, {"status": plan.status}, ns, subresource="status")


def _without_probe_times(status: Mapping[str, Any]) -> Any:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k not in ("lastProbeTime", "lastTransitionTime")}
                         for c in status.get("conditions") or []]
    return out
