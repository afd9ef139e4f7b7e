"""What the trainer Job and its pods say, reduced to one phase, reason and message (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from align_api.constants import Phase, Reason

from .termination import Termination, from_terminated

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: A container that cannot be created from its spec (e.g. a Secret or key it references does not exist).
CONTAINER_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
#: Pending for a reason the user must fix: shown in lastError and on the Running condition.
BLOCKED_REASONS = frozenset({Reason.IMAGE_PULL_FAILED, Reason.UNSCHEDULABLE, Reason.CONFIG_ERROR})
JOB_REASONS = {
    "DeadlineExceeded": Reason.DEADLINE_EXCEEDED,
    "BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
    "PodFailurePolicy": Reason.POD_FAILURE_POLICY,
}


@dataclass
class Observation:
    """The reduced state of one AlignmentJob's Job and pods."""

    phase: Phase
    reason: str
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    restarts: int = 0
    #: The latest pod failure (its termination message), even while a retry runs.
    last_failure: Termination | None = None
    #: The rank-0 pod's successful termination (artifacts), when Succeeded.
    success: Termination | None = None
    #: (pod IP, metrics port) of the rank-0 trainer pod while it runs.
    metrics_endpoint: tuple[str, int, str] | None = None
    failed_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _index(pod: Mapping[str, Any]) -> int:
    annotations = pod.get("metadata", {}).get("annotations") or {}
    return int(annotations.get("batch.kubernetes.io/job-completion-index", "0") or 0)


def _terminated(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return terminated
    return None


def _waiting(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting is not None:
            return waiting
    return None


def observe(job: Mapping[str, Any], pods: list[Mapping[str, Any]], *, queued: bool) -> Observation:
    """Reduce a Job and its pods to a phase. `queued`: the job waits for Kueue (runPolicy.queueName set)."""
    status = job.get("status") or {}
    failed_pods = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                         key=lambda p: (_terminated(p) or {}).get("finishedAt") or "")
    last_failure = None
    failed_at = None
    if failed_pods:
        terminated = _terminated(failed_pods[-1]) or {}
        last_failure = from_terminated(terminated)
        failed_at = terminated.get("finishedAt")
    restarts = int(status.get("failed") or 0) + sum(
        int(cs.get("restartCount") or 0) for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or [])
    base = dict(start_time=status.get("startTime"), restarts=restarts, last_failure=last_failure, failed_at=failed_at)

    if _condition(job, "Complete"):
        rank0 = next((p for p in pods if _index(p) == 0 and (p.get("status") or {}).get("phase") == "Succeeded"), None)
        success = from_terminated(_terminated(rank0) or {}) if rank0 else None
        return Observation(Phase.SUCCEEDED, Reason.TRAINING_SUCCEEDED, "Training finished",
                           completion_time=status.get("completionTime"), success=success, **base)
    failed = _condition(job, "Failed")
    if failed:
        reason = JOB_REASONS.get(failed.get("reason", ""), Reason.TRAINER_ERROR)
        message = failed.get("message", "")
        if last_failure is not None and reason in (Reason.POD_FAILURE_POLICY, Reason.BACKOFF_LIMIT_EXCEEDED):
            if reason == Reason.POD_FAILURE_POLICY and last_failure.reason:
                reason = last_failure.reason  # ConfigError, DataError, Diverged, ... from the exit code
            message = last_failure.message or message
        return Observation(Phase.FAILED, reason, message,
                           completion_time=failed.get("lastTransitionTime") or status.get("completionTime"), **base)
    live = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    if _condition(job, "Suspended") or (job.get("spec") or {}).get("suspend"):
        if queued:
            return Observation(Phase.QUEUED, Reason.QUEUED_BY_KUEUE, "Waiting for Kueue to admit the workload", **base)
        if live:  # the Job controller deleted them; they checkpoint on SIGTERM: not suspended until they are gone
            return Observation(Phase.RUNNING, Reason.SUSPENDING,
                               f"Stopping: {len(live)} trainer pod(s) checkpointing and exiting", **base)
        return Observation(Phase.SUSPENDED, Reason.SUSPENDED_BY_USER, "Suspended by spec.runPolicy.suspend", **base)

    for pod in live:
        waiting = _waiting(pod) or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            return Observation(Phase.PENDING, Reason.IMAGE_PULL_FAILED, waiting.get("message", waiting["reason"]), **base)
        if waiting.get("reason") in CONTAINER_CONFIG_REASONS:
            return Observation(Phase.PENDING, Reason.CONFIG_ERROR, waiting.get("message", waiting["reason"]), **base)
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                    cond.get("reason") == "Unschedulable":
                return Observation(Phase.PENDING, Reason.UNSCHEDULABLE, cond.get("message", "Unschedulable"), **base)
    running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        rank0 = next((p for p in running if _index(p) == 0), running[0])
        endpoint = None
        ip = (rank0.get("status") or {}).get("podIP")
        annotations = rank0.get("metadata", {}).get("annotations") or {}
        if ip and annotations.get("prometheus.io/port"):
            endpoint = (ip, int(annotations["prometheus.io/port"]), annotations.get("prometheus.io/path", "/metrics"))
        starts = [(p.get("status") or {}).get("startTime") for p in running]
        base["start_time"] = base["start_time"] or min((s for s in starts if s), default=None)
        return Observation(Phase.RUNNING, Reason.PODS_RUNNING, f"{len(running)} trainer pod(s) running",
                           metrics_endpoint=endpoint, **base)
    if any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods):
        # Pods are done, the Job controller has not declared the Job complete yet: still running, not pending.
        return Observation(Phase.RUNNING, Reason.PODS_RUNNING, "Trainer pods finished; completing", **base)
    return Observation(Phase.PENDING, Reason.JOB_CREATED, "Waiting for trainer pods", **base)
