"""The trainer's milestones, read off two successive statuses (pure): what the operator posts as events, so that
`kubectl get events` and `alignctl events` tell a job's story (progress each quarter, each checkpoint kept,
evaluation and its gates)."""

from __future__ import annotations

from typing import Any, Mapping

from align_api.constants import ConditionType, Reason

from .checkpoints import new_steps
from .conditions import get_condition

#: Progress percentages that get an event when crossed.
QUARTERS = (25, 50, 75)
#: Metrics named in a progress event (the first of these the trainer exports).
SHOWN = ("loss", "eval_loss", "reward", "rewards_margins", "kl")

PROGRESS = "TrainingProgress"
EVALUATED = "Evaluated"
CHECKPOINT_SAVED = "CheckpointSaved"


def _numbers(values: Mapping[str, Any] | None, names: tuple[str, ...] | None = None) -> str:
    items = [(k, v) for k, v in (values or {}).items() if isinstance(v, (int, float)) and (names is None or k in names)]
    return ", ".join(f"{k} {v:.4g}" for k, v in items[:6])


def milestones(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(event type, reason, message) for each milestone reached between `before` and `after`."""
    out: list[tuple[str, str, str]] = []
    was = float((before.get("progress") or {}).get("percent") or 0)
    progress = after.get("progress") or {}
    now = float(progress.get("percent") or 0)
    crossed = [q for q in QUARTERS if was < q <= now]
    if crossed and after.get("phase") == "Running":
        numbers = _numbers(after.get("metrics"), SHOWN)
        out.append(("Normal", PROGRESS, f"{crossed[-1]}%: step {progress.get('step')}/{progress.get('totalSteps')}"
                                        + (f", {numbers}" if numbers else "")))
    for saved in new_steps(before, after):
        numbers = _numbers(saved.get("metrics"), SHOWN)
        out.append(("Normal", CHECKPOINT_SAVED, f"checkpoint at step {saved['step']}"
                    + (f": {numbers}" if numbers else "") + (f" ({saved['uri']})" if saved.get("uri") else "")))
    if after.get("evaluation") and not before.get("evaluation"):
        gate = next((c for c in after.get("conditions") or [] if c.get("type") == ConditionType.EVALUATED), None)
        if gate is not None and gate.get("status") == "False":
            out.append(("Warning", str(gate.get("reason")), f"{gate.get('message')}: {_numbers(after['evaluation'])}"))
        else:
            out.append(("Normal", EVALUATED, f"evaluation: {_numbers(after['evaluation'])}"
                                             + ("; every gate passed" if gate is not None else "")))
    was = get_condition(list(before.get("conditions") or []), ConditionType.PROMOTED) or {}
    promoted = get_condition(list(after.get("conditions") or []), ConditionType.PROMOTED)
    if promoted is not None and [promoted.get(k) for k in ("status", "reason", "message")] != \
            [was.get(k) for k in ("status", "reason", "message")]:
        quiet = promoted.get("status") == "True" or promoted.get("reason") in (Reason.PROMOTING,
                                                                                Reason.PROMOTION_WAITING)
        out.append(("Normal" if quiet else "Warning", str(promoted.get("reason")), str(promoted.get("message"))))
    return out


__all__ = ["milestones"]
