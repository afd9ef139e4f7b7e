"""KEP-1623 conditions: one per type, lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from typing import Any

from align_api.constants import TERMINAL_PHASES, ConditionType, Phase
from align_api.status import now_rfc3339

#: For each phase, the condition type that is True while in it.
PHASE_CONDITION = {
    Phase.WAITING: ConditionType.WAITING, Phase.QUEUED: ConditionType.QUEUED, Phase.RUNNING: ConditionType.RUNNING,
    Phase.SUSPENDED: ConditionType.SUSPENDED, Phase.SUCCEEDED: ConditionType.SUCCEEDED,
    Phase.FAILED: ConditionType.FAILED, Phase.CANCELLED: ConditionType.CANCELLED,
}


def set_condition(conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str,
                  generation: int | None, now: str | None = None) -> list[dict[str, Any]]:
    """A new list with condition `kind` set; lastTransitionTime changes only if the status changed."""
    now = now or now_rfc3339()
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != kind:
            out.append(cond)
            continue
        found = True
        changed = cond.get("status") != status
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": now if changed else cond.get("lastTransitionTime", now),
                    "observedGeneration": generation})
    if not found:
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": now, "observedGeneration": generation})
    return out


def phase_conditions(conditions: list[dict[str, Any]], phase: Phase, reason: str, message: str,
                     generation: int | None, now: str | None = None) -> list[dict[str, Any]]:
    """Make the phase's condition True and every other phase condition already present False. In a final
    phase every present condition carries the final reason: a failed job's Running condition must not keep
    saying "Waiting for trainer pods" from the moment between the pod's failure and the Job's."""
    active = PHASE_CONDITION.get(phase)
    final = phase in TERMINAL_PHASES
    out = list(conditions)
    for kind in PHASE_CONDITION.values():
        if kind == active:
            out = set_condition(out, kind, "True", reason, message, generation, now)
        elif any(c.get("type") == kind and (c.get("status") == "True" or final) for c in out):
            out = set_condition(out, kind, "False", reason, message, generation, now)
    return out


def get_condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)
