"""The next AlignmentJob status from the current one and an Observation (pure)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from align_api.constants import TERMINAL_PHASES, ConditionType, Phase, Reason

from .conditions import phase_conditions, set_condition
from .observe import BLOCKED_REASONS, Observation
from .progress import completed
from .warnings import ended_warnings


def next_status(current: Mapping[str, Any], obs: Observation, *, generation: int | None, now: str,
                fallback_artifacts: Mapping[str, Any] | None = None,
                checkpoint_uri: Callable[[int], str | None] | None = None) -> dict[str, Any]:
    """The status after `obs`; the same dict content when nothing changed (callers compare)."""
    status = copy.deepcopy(dict(current))
    if status.get("phase") in TERMINAL_PHASES:
        return status  # a finished job's status is final
    conditions = status.get("conditions") or []
    conditions = phase_conditions(conditions, obs.phase, obs.reason, obs.message, generation, now)
    if obs.phase == Phase.RUNNING:
        conditions = set_condition(conditions, ConditionType.RUNNING, "True", obs.reason, obs.message, generation,
                                   now)
    elif obs.phase == Phase.PENDING and obs.reason in BLOCKED_REASONS:
        conditions = set_condition(conditions, ConditionType.RUNNING, "False", obs.reason, obs.message, generation,
                                   now)
    status["conditions"] = _stable(current.get("conditions") or [], conditions)
    status["phase"] = obs.phase.value
    status["restarts"] = obs.restarts
    if obs.start_time and not status.get("startTime"):
        status["startTime"] = obs.start_time
    if obs.phase == Phase.FAILED:
        status["completionTime"] = obs.completion_time or now
        _set_error(status, str(obs.reason), obs.message, obs.failed_at or now)
    elif obs.phase == Phase.PENDING and obs.reason in BLOCKED_REASONS:
        _set_error(status, str(obs.reason), obs.message, now)
    elif obs.last_failure is not None and obs.phase != Phase.SUCCEEDED:  # a retry runs: keep its cause visible
        failure = obs.last_failure
        _set_error(status, str(failure.reason or Reason.TRAINER_ERROR),
                   failure.message or f"exit code {failure.exit_code}", obs.failed_at or now)
    elif obs.phase == Phase.SUCCEEDED or (status.get("lastError") or {}).get("reason") in BLOCKED_REASONS:
        # lastError explains the current state; what it explained is over (the job succeeded, or the pod it waited
        # for got scheduled, pulled or created). Its history stays in the job's events (handlers/track.py).
        status.pop("lastError", None)
    if obs.phase == Phase.CANCELLED:  # what was written stays where it is; status says where
        status["completionTime"] = obs.completion_time or now
        if fallback_artifacts:
            status["artifacts"] = {**dict(fallback_artifacts), **(status.get("artifacts") or {})}
    if obs.phase == Phase.SUCCEEDED:
        status["completionTime"] = obs.completion_time or now
        final = obs.success
        status["progress"] = completed(status.get("progress"), now,
                                       (final.total_steps or final.steps) if final is not None else None)
        artifacts = dict(fallback_artifacts or {})
        if obs.success is not None:
            artifacts.update(obs.success.artifacts)
            if obs.success.final_metrics:
                status["metrics"] = {**(status.get("metrics") or {}), **obs.success.final_metrics}
            if obs.success.evaluation:
                status["evaluation"] = dict(obs.success.evaluation)
            if obs.success.checkpoints:  # the final kept list (a scrape may have missed the last save)
                status["checkpoints"] = _checkpoints(obs.success.checkpoints, checkpoint_uri)
            if obs.success.evaluation_problem is not None:  # it ran but measured nothing: never "passed"
                reason, message = obs.success.evaluation_problem
                status["conditions"] = set_condition(status["conditions"], ConditionType.EVALUATED, "False",
                                                     reason, message, generation, now)
            elif obs.success.evaluation:
                status["conditions"] = set_condition(
                    status["conditions"], ConditionType.EVALUATED, "True", Reason.EVALUATION_PASSED,
                    "Evaluation finished and every gate passed", generation, now)
            if obs.success.warnings:  # a run that ended before the operator's next scrape reports them here alone
                status["conditions"] = ended_warnings(status["conditions"], obs.success.warnings, generation, now)
        if artifacts:
            status["artifacts"] = artifacts
    return status


def _checkpoints(records: list[dict[str, Any]], uri: Callable[[int], str | None] | None) -> list[dict[str, Any]]:
    out = []
    for record in sorted(records, key=lambda r: r["step"]):
        item = {k: record[k] for k in ("step", "time", "metrics", "evaluation") if record.get(k) is not None}
        location = uri(record["step"]) if uri is not None else None
        if location:
            item["uri"] = location
        out.append(item)
    return out


def _set_error(status: dict[str, Any], reason: str, message: str, time: str) -> None:
    previous = status.get("lastError") or {}
    if previous.get("reason") == reason and previous.get("message") == message:
        return  # same error: keep its first time
    status["lastError"] = {"reason": reason, "message": message, "time": time}


def _stable(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the old condition objects when only observedGeneration is unchanged (no spurious writes)."""
    old = {c.get("type"): c for c in before}
    return [old[c["type"]] if old.get(c["type"]) == c else c for c in after]
