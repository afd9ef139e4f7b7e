"""A run's warnings from its success termination message (status/warnings.ended_warnings via compute.next_status):
the condition and exactly one event (handlers/track.py posts one per new_warnings entry), whether or not a scrape
saw the warning while the pod ran, and none again for a job whose status already has it."""

from __future__ import annotations

import json
from typing import Any

from align_api.constants import Phase
from align_operator.status.compute import next_status
from align_operator.status.conditions import get_condition
from align_operator.status.observe import observe
from align_operator.status.termination import MAX_MESSAGE, clip, from_terminated
from align_operator.status.warnings import new_warnings, warning_conditions

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
FULL = "no learning signal: grader 'exact' gave every prompt's samples the same reward; 'A: bowling' vs 'A' -> 0"
CUT = FULL[:40] + " [cut: the trainer's log has the whole message]"


def ended(message: dict[str, Any], *, complete: bool = True) -> Any:
    """The observation of a trainer Job whose rank-0 pod succeeded with this termination message."""
    job = {"metadata": {"name": "x-trainer"}, "spec": {},
           "status": {"conditions": [{"type": "Complete", "status": "True"}] if complete else []}}
    pod = {"metadata": {"name": "x-0", "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
           "status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {
               "exitCode": 0, "message": json.dumps(message)}}}]}}
    return observe(job, [pod], queued=False)


def running() -> dict[str, Any]:
    return {"phase": "Running", "conditions": [{"type": "Running", "status": "True", "reason": "PodsRunning",
                                                "message": "", "lastTransitionTime": NOW, "observedGeneration": 1}]}


def events(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [c["reason"] for c in new_warnings(before.get("conditions") or [], after.get("conditions") or [])]


def test_a_warning_no_scrape_saw_becomes_the_condition_and_one_event() -> None:
    obs = ended({"adapter": "s3://b/a", "warnings": [{"reason": "NoLearningSignal", "message": FULL},
                                                     {"reason": "SomethingNew", "message": "left to the metrics"},
                                                     "not a record", {"message": "no reason"}]})
    assert obs.phase == Phase.SUCCEEDED and obs.success.warnings == {"NoLearningSignal": FULL,
                                                                     "SomethingNew": "left to the metrics"}
    before = running()
    after = next_status(before, obs, generation=1, now=LATER)
    cond = get_condition(after["conditions"], "LearningSignal")
    assert cond == {"type": "LearningSignal", "status": "False", "reason": "NoLearningSignal", "message": FULL,
                    "lastTransitionTime": LATER, "observedGeneration": 1}
    assert events(before, after) == ["NoLearningSignal"]
    # the operator restarted (or passed again): the job has ended, its status is final, no second event
    assert next_status(after, obs, generation=1, now=LATER) == after and events(after, after) == []


def test_a_warning_a_scrape_applied_is_not_applied_again() -> None:
    before = running()
    scraped = {**before, "conditions": warning_conditions(before["conditions"], {"NoLearningSignal": FULL}, 1, NOW)}
    assert events(before, scraped) == ["NoLearningSignal"]  # the scrape's event
    # the termination message carries a shorter cut of the same warning: the scrape's condition stays, no event
    after = next_status(scraped, ended({"warnings": [{"reason": "NoLearningSignal", "message": CUT}]}),
                        generation=1, now=LATER)
    assert get_condition(after["conditions"], "LearningSignal") == \
        get_condition(scraped["conditions"], "LearningSignal")
    assert after["phase"] == "Succeeded" and events(scraped, after) == []


def test_pods_done_before_the_job_completes_wait_for_the_job() -> None:
    # the pod ended, the Job controller has not said Complete: Running ("completing"), nothing read yet
    obs = ended({"warnings": [{"reason": "NoLearningSignal", "message": FULL}]}, complete=False)
    assert obs.phase == Phase.RUNNING and obs.success is None
    assert get_condition(next_status(running(), obs, generation=1, now=LATER)["conditions"], "LearningSignal") is None


def test_the_failure_path_keeps_what_went_wrong_and_the_last_words() -> None:
    # failOnNoLearningSignal: exit 17 and "<Reason>: <message>"; sampled answers make the message long
    message = FULL + "; " + "; ".join([repr("é\x01" * 40) + " vs 'A' -> 0"] * 12) + \
        " (spec.runPolicy.failOnNoLearningSignal)"
    failure = from_terminated({"exitCode": 17, "message": f"NoLearningSignal: {message}"})
    assert failure.reason == "NoLearningSignal" and len(failure.message) == MAX_MESSAGE
    assert failure.message.startswith("no learning signal: grader 'exact' gave every prompt's samples the same reward")
    assert failure.message.endswith("(spec.runPolicy.failOnNoLearningSignal)")
    job = {"metadata": {"name": "x-trainer"}, "spec": {}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "container exited 17"}]}}
    pod = {"metadata": {"name": "x-0", "annotations": {}}, "status": {"phase": "Failed", "containerStatuses": [
        {"state": {"terminated": {"exitCode": 17, "message": f"NoLearningSignal: {message}"}}}]}}
    status = next_status(running(), observe(job, [pod], queued=False), generation=1, now=LATER)
    assert status["lastError"]["reason"] == "NoLearningSignal" and status["lastError"]["message"] == failure.message
    assert get_condition(status["conditions"], "Failed")["reason"] == "NoLearningSignal"
    # short messages pass unchanged; a log tail (no reason of ours) keeps its end
    assert clip("short") == "short"
    assert from_terminated({"exitCode": 1, "message": "x" * 2000 + "END"}).message.endswith("END")
