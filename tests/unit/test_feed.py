"""The events feed (feed.py) and the trainer milestones the operator posts (status/milestones.py)."""

from __future__ import annotations

from typing import Any

from align_operator.feed import feed, fresh
from align_operator.status.milestones import milestones

JOB = {"metadata": {"name": "run", "uid": "u-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
       "status": {"jobName": "run-trainer"}}


def event(kind: str, name: str, time: str, reason: str, *, uid: str = "", eid: str = "", count: int = 1) -> dict[str, Any]:
    return {"metadata": {"uid": eid or f"{name}-{reason}-{time}"}, "lastTimestamp": time, "reason": reason,
            "type": "Normal", "message": reason.lower(), "count": count,
            "involvedObject": {"kind": kind, "name": name, "uid": uid}}


def test_the_feed_is_the_jobs_own_events_by_uid_and_its_childrens_by_name_in_time_order() -> None:
    items = [
        event("AlignmentJob", "run", "2026-01-01T00:00:05Z", "Suspending", uid="u-1"),
        event("Pod", "run-trainer-0-abcde", "2026-01-01T00:00:02Z", "Scheduled"),
        event("AlignmentJob", "run", "2026-01-01T00:00:01Z", "JobCreated", uid="u-1"),
        event("Job", "run-trainer", "2026-01-01T00:00:03Z", "SuccessfulCreate"),
        event("AlignmentJob", "run", "2026-01-01T00:00:04Z", "JobCreated", uid="u-0"),   # an older object
        event("Job", "run-trainer", "2025-12-31T23:59:00Z", "SuccessfulCreate"),           # ... and its child
        event("Pod", "other-trainer-0-x", "2026-01-01T00:00:03Z", "Scheduled"),            # another job
        event("Job", "run-trainer-x", "2026-01-01T00:00:03Z", "SuccessfulCreate"),
    ]
    assert [(e["object"], e["reason"]) for e in feed(items, JOB)] == [
        ("AlignmentJob/run", "JobCreated"), ("Pod/run-trainer-0-abcde", "Scheduled"),
        ("Job/run-trainer", "SuccessfulCreate"), ("AlignmentJob/run", "Suspending")]


def test_follow_prints_each_event_once_and_again_when_it_repeats() -> None:
    seen: dict[str, tuple[str, int]] = {}
    first = feed([event("AlignmentJob", "run", "2026-01-01T00:00:01Z", "BackOff", uid="u-1", eid="e")], JOB)
    assert len(fresh(first, seen)) == 1 and fresh(first, seen) == []
    repeated = feed([event("AlignmentJob", "run", "2026-01-01T00:00:09Z", "BackOff", uid="u-1", eid="e", count=2)],
                    JOB)
    assert [e["count"] for e in fresh(repeated, seen)] == [2]


def test_milestones_progress_quarters_and_evaluation() -> None:
    before = {"phase": "Running", "progress": {"percent": 20.0}}
    after = {"phase": "Running", "progress": {"percent": 55.0, "step": 11, "totalSteps": 20},
             "metrics": {"loss": 0.5, "learning_rate": 1e-4}}
    assert milestones(before, after) == [("Normal", "TrainingProgress", "50%: step 11/20, loss 0.5")]
    assert milestones(after, after) == []
    done = {"phase": "Succeeded", "evaluation": {"winRate": 0.7},
            "conditions": [{"type": "Evaluated", "status": "True", "reason": "EvaluationPassed"}]}
    assert milestones(after, done) == [("Normal", "Evaluated", "evaluation: winRate 0.7; every gate passed")]
    unscored = {**done, "conditions": [{"type": "Evaluated", "status": "False", "reason": "EvaluationUnscored",
                                        "message": "no sample scored"}]}
    assert milestones(after, unscored)[0][:2] == ("Warning", "EvaluationUnscored")
