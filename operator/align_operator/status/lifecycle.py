"""Pause, resume and cancel as a level-triggered plan (pure): what the spec asks for, what the API server holds
(the trainer Job or its absence, the pods), and the one step that moves the second toward the first.

Where the server keeps a Job's `spec.suspend` (Kubernetes >= 1.21), stopping is `suspend: true` on the Job: the
Job controller deletes the pods (SIGTERM: the trainer checkpoints) and Kueue sees a suspended workload. Where the
server prunes the field (1.20), the Job is deleted instead (its pods go with it) and created again under the same
name on resume. Which one applies is read from the stored Job (did it keep `spec.suspend`?), never configured.
The job is only reported stopped once no trainer pod is left. Every input comes from the API server, so an
operator restarted in the middle of a transition takes the same next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping, Sequence

from align_api.constants import TERMINAL_PHASES, Phase, Reason

from .observe import Observation

#: Pod phases after which a pod holds no resources and writes nothing.
ENDED_POD_PHASES = ("Succeeded", "Failed")


class Want(StrEnum):
    """What the spec asks of the trainer."""

    RUN = "Run"
    SUSPEND = "Suspend"
    BUDGET = "Budget"     # suspended because a runPolicy budget is used up
    CANCEL = "Cancel"


class Action(StrEnum):
    NONE = "None"
    SUSPEND_JOB = "SuspendJob"        # patch the Job's spec.suspend to true
    UNSUSPEND_JOB = "UnsuspendJob"    # patch it to false
    DELETE_JOB = "DeleteJob"          # the server has no Job suspend: delete the Job (its pods go with it)
    CREATE_JOB = "CreateJob"          # resume after a delete: the Job again, same name


@dataclass(frozen=True)
class Plan:
    action: Action
    #: True once the trainer is stopped as asked (no Job pods left running); the phase may then say so.
    stopped: bool = False
    #: Pods that still run (checkpointing after SIGTERM) while a stop is under way.
    stopping_pods: int = 0


def want(spec: Mapping[str, Any], budget_exhausted: bool = False) -> Want:
    """Cancel wins over suspend, a user's suspend over a budget (status.usage, status/usage.py)."""
    run_policy = spec.get("runPolicy") or {}
    if run_policy.get("cancel"):
        return Want.CANCEL
    if run_policy.get("suspend"):
        return Want.SUSPEND
    if budget_exhausted:
        return Want.BUDGET
    return Want.RUN


def keeps_suspend(job: Mapping[str, Any]) -> bool:
    """Whether the server kept the Job's `spec.suspend` (a 1.21+ server always stores it, default false)."""
    return "suspend" in (job.get("spec") or {})


def live_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if (p.get("status") or {}).get("phase") not in ENDED_POD_PHASES]


def plan(wanted: Want, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], *,
         queued: bool) -> Plan:
    """The next step for `wanted`, given the stored trainer Job (None: there is none) and its pods.
    `queued`: Kueue admits the Job (runPolicy.queueName), so the operator never unsuspends it itself."""
    running = len(live_pods(pods))
    deleting = job is not None and bool((job.get("metadata") or {}).get("deletionTimestamp"))
    if wanted != Want.RUN:
        if job is None or deleting:
            return Plan(Action.NONE, stopped=running == 0, stopping_pods=running)
        if not keeps_suspend(job):
            return Plan(Action.DELETE_JOB, stopping_pods=running)
        if not (job.get("spec") or {}).get("suspend"):
            return Plan(Action.SUSPEND_JOB, stopping_pods=running)
        return Plan(Action.NONE, stopped=running == 0, stopping_pods=running)
    if job is None:
        # Old pods of the deleted Job must be gone first: two trainers must never share a checkpoint directory.
        return Plan(Action.CREATE_JOB if running == 0 else Action.NONE, stopping_pods=running)
    if deleting:
        return Plan(Action.NONE, stopping_pods=running)
    if keeps_suspend(job) and (job.get("spec") or {}).get("suspend") and not queued:
        return Plan(Action.UNSUSPEND_JOB)
    return Plan(Action.NONE)


def stopped_phase(wanted: Want, budget: str = "") -> tuple[Phase, str, str]:
    """(phase, reason, message) of a job stopped as `wanted` asks (`budget`: what was used of which limit)."""
    if wanted == Want.CANCEL:
        return Phase.CANCELLED, Reason.CANCELLED_BY_USER, "Cancelled by spec.runPolicy.cancel; checkpoints kept"
    if wanted == Want.BUDGET:
        return (Phase.SUSPENDED, Reason.BUDGET_EXHAUSTED,
                f"Budget used up: {budget}; checkpoint kept, raise the limit to resume")
    return (Phase.SUSPENDED, Reason.SUSPENDED_BY_USER,
            "Suspended by spec.runPolicy.suspend: no trainer pod runs; resume continues from the newest checkpoint")


def stopping_message(wanted: Want, pods: int) -> str:
    return f"Stopping ({verb(wanted)}): {pods} trainer pod(s) checkpointing and exiting"


def verb(wanted: Want) -> str:
    return {Want.CANCEL: "cancel", Want.BUDGET: "budget used up"}.get(wanted, "suspend")


def observation(wanted: Want, step: Plan, observed: Observation | None, restarts: int = 0,
                budget: str = "") -> Observation:
    """What to report: the Job's own observation (None: no Job exists), corrected by the lifecycle. A Job that
    finished before a stop took effect keeps its final phase; a stop is reported only once no pod runs."""
    if observed is not None and observed.phase in TERMINAL_PHASES:
        return observed
    base = Observation(Phase.PENDING, Reason.JOB_CREATED, restarts=restarts) if observed is None else observed
    if wanted != Want.RUN:
        if step.stopped:
            phase, reason, message = stopped_phase(wanted, budget)
        else:
            phase, reason, message = Phase.RUNNING, Reason.SUSPENDING, stopping_message(wanted, step.stopping_pods)
        return Observation(phase, reason, message, start_time=base.start_time, restarts=base.restarts,
                           last_failure=base.last_failure, failed_at=base.failed_at)
    if observed is None:
        message = ("Waiting for the stopped trainer pods to exit before re-creating the Job" if step.stopping_pods
                   else "Re-creating the trainer Job to resume from the newest checkpoint")
        return Observation(Phase.PENDING, Reason.RESUMED, message, restarts=restarts)
    return observed


__all__ = ["observation", "Action", "Plan", "Want", "keeps_suspend", "plan", "stopped_phase", "stopping_message", "want"]
