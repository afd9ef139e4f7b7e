"""spec.promote as a level-triggered plan (pure): what the spec asks (a step), what the API server holds (the
job's phase and kept checkpoints, the promote Job `<job>-promote-<step>-<generation>` and its pod), and the next
step plus what status says about it (the Promoted condition, status.promotion, artifacts.adapter).

The promote Job runs the trainer image's `python -m align_trainer.promote` on the job's checkpoint volume once
training has ended (phase Succeeded, Failed or Cancelled): a plain one-pod Job, so it works on every server (1.20
included) and on the emulator. Its name holds the step and the object's generation, so an operator restarted in
the middle finds the Job it made (never a second one), and a spec edit after a failure tries again. A promotion is
settled when status.promotion names the asked step (published), or when the Promoted condition says why not for
the current generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, Sequence

from align_api.constants import ConditionType, Phase, Reason

from .conditions import get_condition, set_condition
from .termination import from_terminated, parse_message

#: Phases after which the trainer writes nothing more: a checkpoint can be published.
ENDED = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
#: Reasons of a Promoted=False that are final for the generation they were computed for.
FINAL_FAILURES = (Reason.PROMOTE_STEP_NOT_FOUND, Reason.EVALUATION_GATE_FAILED, Reason.PROMOTION_FAILED)


class Action(StrEnum):
    NONE = "None"
    CREATE_JOB = "CreateJob"


@dataclass(frozen=True)
class Plan:
    action: Action
    #: The Promoted condition: (status, reason, message); None leaves it as it is.
    condition: tuple[str, str, str] | None = None
    #: status.promotion once published.
    promotion: dict[str, Any] | None = field(default=None)


def asked(spec: Mapping[str, Any]) -> int | None:
    step = (spec.get("promote") or {}).get("step")
    return int(step) if isinstance(step, int) and not isinstance(step, bool) else None


def pending(spec: Mapping[str, Any], status: Mapping[str, Any], generation: int | None) -> bool:
    """Whether spec.promote asks for something not yet settled (published, or refused for this generation)."""
    step = asked(spec)
    if step is None or (status.get("promotion") or {}).get("step") == step:
        return False
    cond = get_condition(list(status.get("conditions") or []), ConditionType.PROMOTED) or {}
    return not (cond.get("status") == "False" and cond.get("reason") in FINAL_FAILURES
                and cond.get("observedGeneration") == generation)


def refusal(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """Why spec.promote.step cannot be published (None: it may be): training has ended and the step is not one of
    the kept checkpoints. While training runs a later step may still come (and retention keeps it)."""
    step = asked(spec)
    kept = sorted(int(c["step"]) for c in status.get("checkpoints") or [] if isinstance(c.get("step"), int))
    if step is None or status.get("phase") not in ENDED or step in kept:
        return None
    return f"spec.promote.step: no checkpoint at step {step}; kept: " + (", ".join(map(str, kept)) or "none")


def _ended(job: Mapping[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job says so (its conditions), else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _terminated(pods: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest ended container state of the Job's pods (one pod: backoffLimit 0)."""
    states = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                states.append(terminated)
    return max(states, key=lambda t: str(t.get("finishedAt") or "")) if states else None


def plan(step: int, status: Mapping[str, Any], job: Mapping[str, Any] | None,
         pods: Sequence[Mapping[str, Any]], now: str) -> Plan:
    """The next step toward publishing checkpoint `step`; `job`: the promote Job of this step and generation."""
    phase = status.get("phase")
    if phase not in ENDED:
        return Plan(Action.NONE, ("False", Reason.PROMOTION_WAITING,
                                  f"step {step}: published once training ends"))
    kept = [c for c in status.get("checkpoints") or [] if isinstance(c.get("step"), int)]
    if job is None:
        refused = refusal({"promote": {"step": step}}, status)
        if kept and refused:  # the trainer's list is the truth; without one, the promote pod checks the volume
            return Plan(Action.NONE, ("False", Reason.PROMOTE_STEP_NOT_FOUND, f"step {step}: {refused}"))
        return Plan(Action.CREATE_JOB, ("False", Reason.PROMOTING, f"step {step}: publishing the checkpoint"))
    ended = _ended(job)
    if ended is None:
        return Plan(Action.NONE, ("False", Reason.PROMOTING, f"step {step}: publishing the checkpoint"))
    terminated = _terminated(pods) or {}
    if ended == "Complete":
        record = (parse_message(terminated.get("message")) or {}).get("promoted")
        if not isinstance(record, dict) or record.get("step") != step:
            return Plan(Action.NONE, ("False", Reason.PROMOTION_FAILED,
                                      f"step {step}: the promote pod ended without its record (termination message)"))
        promotion = {k: record[k] for k in ("step", "source", "adapter", "evaluation", "gates") if k in record}
        promotion["time"] = now
        gates = "; ".join(promotion.get("gates") or [])
        message = (f"step {step}: checkpoint {promotion.get('source')} is the final adapter "
                   f"({promotion.get('adapter')})" + (f"; gates: {gates}" if gates else ""))
        return Plan(Action.NONE, ("True", Reason.PROMOTED, message), promotion)
    failure = from_terminated(terminated) if terminated else None
    reason = failure.reason if failure is not None and failure.reason in FINAL_FAILURES else Reason.PROMOTION_FAILED
    text = failure.message if failure is not None and failure.message else "the promote Job failed"
    return Plan(Action.NONE, ("False", reason, f"step {step}: {text}"))


def apply(status: Mapping[str, Any], step_plan: Plan, generation: int | None, now: str) -> dict[str, Any]:
    """The status after `step_plan` (a copy): the Promoted condition, and once published status.promotion and
    artifacts.adapter (where the promoted adapter is: what job://<name> reads)."""
    new = dict(status)
    if step_plan.condition is not None:
        state, reason, message = step_plan.condition
        new["conditions"] = set_condition(list(status.get("conditions") or []), ConditionType.PROMOTED, state,
                                          reason, message[:1024], generation, now)
    if step_plan.promotion is not None:
        new["promotion"] = step_plan.promotion
        if step_plan.promotion.get("adapter"):
            new["artifacts"] = {**(status.get("artifacts") or {}), "adapter": step_plan.promotion["adapter"]}
        if step_plan.promotion.get("evaluation"):
            new["evaluation"] = dict(step_plan.promotion["evaluation"])
    return new


__all__ = ["Action", "Plan", "apply", "asked", "pending", "plan", "refusal"]
