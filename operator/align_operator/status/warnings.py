"""Warnings the trainer reports (align_trainer_warning{reason, message} 1 while it runs, and `warnings` in its
success termination message) -> conditions (pure).

The run goes on; the condition says what is wrong (e.g. LearningSignal=False, reason NoLearningSignal, with the
trainer's sampled answers in the message) and handlers/track.py records a Warning event when it appears.
A scrape sees a warning only while the pod runs; a run that ends before the operator's next scrape reports it in
its termination message alone, so the ended pod's warnings are merged in too (`ended_warnings`), without a
second event for a warning a scrape already turned into its condition.
"""

from __future__ import annotations

from typing import Any, Sequence

from prometheus_client.metrics_core import Metric

from align_api.constants import ConditionType, Reason

from .conditions import get_condition, set_condition

WARNING_METRIC = "align_trainer_warning"
#: trainer warning reason -> (condition type, its status while the warning holds)
WARNING_CONDITIONS = {Reason.NO_LEARNING_SIGNAL: (ConditionType.LEARNING_SIGNAL, "False")}


def parse_warnings(families: Sequence[Metric]) -> dict[str, str]:
    """{reason: message} of the warning series set to 1 in a /metrics exposition (families from exposition.parse)."""
    out: dict[str, str] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == WARNING_METRIC and sample.value == 1 and sample.labels.get("reason"):
                out.setdefault(sample.labels["reason"], sample.labels.get("message", ""))
    return out


def warning_conditions(conditions: list[dict[str, Any]], warnings: dict[str, str], generation: int | None,
                       now: str) -> list[dict[str, Any]]:
    """`conditions` with one condition per known warning (an unknown reason is left to the metrics)."""
    for reason, message in warnings.items():
        if reason in WARNING_CONDITIONS:
            kind, status = WARNING_CONDITIONS[reason]
            conditions = set_condition(conditions, kind, status, reason, message, generation, now)
    return conditions


def ended_warnings(conditions: list[dict[str, Any]], warnings: dict[str, str], generation: int | None,
                   now: str) -> list[dict[str, Any]]:
    """`conditions` with the warnings of the trainer's termination message. A condition that already holds with
    the same reason (a scrape saw the warning while the pod ran) stays as it is: the termination message may carry
    a shorter cut of the same message, which must not read as a new warning (new_warnings: one event)."""
    for reason, message in warnings.items():
        if reason not in WARNING_CONDITIONS:
            continue
        kind, status = WARNING_CONDITIONS[reason]
        old = get_condition(conditions, kind) or {}
        if (old.get("status"), old.get("reason")) != (status, reason):
            conditions = set_condition(conditions, kind, status, reason, message, generation, now)
    return conditions


def new_warnings(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warning conditions in `after` that `before` did not have with the same reason and message (one event each)."""
    out = []
    for kind, status in WARNING_CONDITIONS.values():
        cond = get_condition(after, kind)
        old = get_condition(before, kind) or {}
        if cond is not None and cond.get("status") == status and \
                (old.get("reason"), old.get("message"), old.get("status")) != (cond.get("reason"), cond.get("message"), status):
            out.append(cond)
    return out
