"""Termination messages: what the trainer (or the kubelet's log fallback) said when a pod ended.

The trainer writes either a JSON object or text (`<Reason>: <message>`, or anything) to its termination log.
JSON keys understood here:
`reason`, `message` (failures) and the artifact URIs `adapter`, `merged`, `checkpoints`, `report`, `metrics`
(at the top level or under `artifacts`), `steps` and `totalSteps`, the final numbers under `finalMetrics`
the evaluation's numbers (winRate, rewardDelta, ...) under `evaluation`, the kept checkpoints under
`checkpointIndex`, and the warnings the run went on with under `warnings` ([{reason, message}]).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from align_api.constants import ExitCode, Reason

_PREFIXED = re.compile(r"^([A-Z][A-Za-z]+): (.*)$", re.S)
_REASONS = {reason.value for reason in Reason}
ARTIFACT_KEYS = ("adapter", "merged", "checkpoints", "report", "metrics")
MAX_MESSAGE = 1024
ELIDED = " [...] "


@dataclass
class Termination:
    exit_code: int | None
    reason: str | None = None
    message: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    final_metrics: dict[str, float | None] = field(default_factory=dict)
    steps: int | None = None
    total_steps: int | None = None
    evaluation: dict[str, float | None] = field(default_factory=dict)
    #: (reason, message) when the evaluation ran but measured nothing (e.g. no sample could be scored).
    evaluation_problem: tuple[str, str] | None = None
    #: The kept checkpoints' records (`checkpointIndex`: step, time, metrics, evaluation).
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    #: {reason: message} of the warnings the run went on with (`warnings`; status/warnings.py).
    warnings: dict[str, str] = field(default_factory=dict)


def parse_message(text: str | None) -> dict[str, Any] | None:
    """The JSON object in a termination message, or None for plain text."""
    text = (text or "").strip()
    if not text.startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """The trainer's own message in `limit` characters: its head (what went wrong: the trainer writes that first,
    e.g. NoLearningSignal's "no learning signal: grader ..." before the sampled answers) and its tail (the last
    error or advice), the middle elided."""
    if len(text) <= limit:
        return text
    head = (limit - len(ELIDED)) // 2
    return text[:head] + ELIDED + text[len(text) - (limit - len(ELIDED) - head):]


def reason_for(exit_code: int | None, kubelet_reason: str | None) -> str:
    """Our Reason for a container that ended: OOMKilled from the kubelet, permanent codes from the trainer."""
    if kubelet_reason == "OOMKilled":
        return Reason.OOM_KILLED
    if exit_code is not None and exit_code in ExitCode.REASONS:
        return ExitCode.REASONS[exit_code]
    return Reason.TRAINER_ERROR


def from_terminated(terminated: dict[str, Any]) -> Termination:
    """Read a containerStatuses[].state.terminated block."""
    code = terminated.get("exitCode")
    text = terminated.get("message") or ""
    doc = parse_message(text)
    result = Termination(exit_code=code, reason=reason_for(code, terminated.get("reason")))
    if doc is None:
        prefixed = _PREFIXED.match(text.strip())
        if prefixed and prefixed.group(1) in _REASONS and code not in (0, None):
            # The trainer's own format: "<Reason>: <message>".
            result.reason, text = prefixed.group(1), prefixed.group(2)
            result.message = clip(text.strip())
        else:
            result.message = text.strip()[-MAX_MESSAGE:]  # e.g. the kubelet's log tail: its end says the most
        return result
    if doc.get("reason") and code not in (0, None):
        result.reason = str(doc["reason"])
    result.message = clip(str(doc.get("message") or "").strip())
    artifacts = doc.get("artifacts") if isinstance(doc.get("artifacts"), dict) else doc
    result.artifacts = {k: artifacts[k] for k in ARTIFACT_KEYS if isinstance(artifacts.get(k), (str, list))}
    for key, attr in (("steps", "steps"), ("totalSteps", "total_steps"), ("total_steps", "total_steps")):
        if isinstance(doc.get(key), (int, float)) and not isinstance(doc.get(key), bool):
            setattr(result, attr, int(doc[key]))
    final = doc.get("finalMetrics") or doc.get("final_metrics")
    if isinstance(final, dict):
        result.final_metrics = {str(k): _number(v) for k, v in final.items()}
    problem = doc.get("evaluationProblem")
    if isinstance(problem, dict) and problem.get("reason"):
        result.evaluation_problem = (str(problem["reason"]), str(problem.get("message") or "")[:MAX_MESSAGE])
    index = doc.get("checkpointIndex")
    if isinstance(index, list):
        result.checkpoints = [r for r in index if isinstance(r, dict) and isinstance(r.get("step"), int)]
    warnings = doc.get("warnings")
    for warning in warnings if isinstance(warnings, list) else []:
        if isinstance(warning, dict) and isinstance(warning.get("reason"), str) and warning["reason"]:
            result.warnings.setdefault(warning["reason"], str(warning.get("message") or "")[:MAX_MESSAGE])
    evaluation = doc.get("evaluation")
    if isinstance(evaluation, dict):
        result.evaluation = {str(k): _number(v) for k, v in evaluation.items() if not isinstance(v, (dict, list))}
    return result


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number
