"""The pure pause/resume/cancel plan (status/lifecycle.py) and what it reports."""

from __future__ import annotations

from typing import Any

import pytest

from align_api.constants import Phase, Reason
from align_operator.status.compute import next_status
from align_operator.status.lifecycle import Action, Want, observation, plan, want
from align_operator.status.observe import observe


def job(*, suspend: bool | None = False, deleting: bool = False, complete: bool = False) -> dict[str, Any]:
    """A stored Job; suspend=None: the server pruned the field (Kubernetes 1.20)."""
    meta: dict[str, Any] = {"name": "j-trainer", **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    return {"metadata": meta, "spec": {} if suspend is None else {"suspend": suspend},
            "status": {"conditions": conditions}}


def pod(phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": "p", "annotations": {}}, "status": {"phase": phase}}


@pytest.mark.parametrize("spec, wanted", [
    ({}, Want.RUN), ({"runPolicy": {"suspend": True}}, Want.SUSPEND),
    ({"runPolicy": {"suspend": True, "cancel": True}}, Want.CANCEL), ({"runPolicy": {"cancel": True}}, Want.CANCEL)])
def test_want_reads_run_policy(spec: dict[str, Any], wanted: Want) -> None:
    assert want(spec) == wanted


def test_a_server_with_job_suspend_gets_the_job_suspended_and_is_stopped_only_when_no_pod_runs() -> None:
    assert plan(Want.SUSPEND, job(), [pod()], queued=False).action == Action.SUSPEND_JOB
    waiting = plan(Want.SUSPEND, job(suspend=True), [pod()], queued=False)
    assert waiting.action == Action.NONE and not waiting.stopped and waiting.stopping_pods == 1
    done = plan(Want.SUSPEND, job(suspend=True), [pod("Failed")], queued=False)
    assert done.action == Action.NONE and done.stopped


def test_a_server_that_prunes_job_suspend_gets_the_job_deleted_and_recreated_once_its_pods_are_gone() -> None:
    assert plan(Want.SUSPEND, job(suspend=None), [pod()], queued=False).action == Action.DELETE_JOB
    assert not plan(Want.SUSPEND, job(suspend=None, deleting=True), [pod()], queued=False).stopped
    assert not plan(Want.SUSPEND, None, [pod()], queued=False).stopped      # the Job went, its pod still exits
    assert plan(Want.CANCEL, None, [], queued=False).stopped
    # resume: never a second trainer beside an exiting one (they would share the checkpoint directory)
    assert plan(Want.RUN, None, [pod()], queued=False).action == Action.NONE
    assert plan(Want.RUN, job(suspend=None, deleting=True), [], queued=False).action == Action.NONE
    assert plan(Want.RUN, None, [], queued=False).action == Action.CREATE_JOB
    assert plan(Want.RUN, job(suspend=None), [pod()], queued=False).action == Action.NONE


def test_resume_unsuspends_unless_kueue_admits_the_job() -> None:
    assert plan(Want.RUN, job(suspend=True), [], queued=False).action == Action.UNSUSPEND_JOB
    assert plan(Want.RUN, job(suspend=True), [], queued=True).action == Action.NONE
    assert plan(Want.RUN, job(), [pod()], queued=False).action == Action.NONE


def test_observe_says_suspended_only_once_the_pods_are_gone() -> None:
    stopping = observe(job(suspend=True), [pod()], queued=False)
    assert (stopping.phase, stopping.reason) == (Phase.RUNNING, Reason.SUSPENDING)
    assert observe(job(suspend=True), [], queued=False).phase == Phase.SUSPENDED


def test_reported_phase_for_each_stop() -> None:
    running = observe(job(suspend=None), [pod()], queued=False)
    step = plan(Want.SUSPEND, job(suspend=None), [pod()], queued=False)
    assert observation(Want.SUSPEND, step, running).reason == Reason.SUSPENDING
    gone = plan(Want.SUSPEND, None, [], queued=False)
    assert observation(Want.SUSPEND, gone, None, restarts=2).phase == Phase.SUSPENDED
    assert observation(Want.SUSPEND, gone, None, restarts=2).restarts == 2
    cancelled = observation(Want.CANCEL, plan(Want.CANCEL, None, [], queued=False), None)
    assert (cancelled.phase, cancelled.reason) == (Phase.CANCELLED, Reason.CANCELLED_BY_USER)
    # a Job that finished before the stop took effect keeps its result
    finished = observe(job(complete=True), [], queued=False)
    assert observation(Want.CANCEL, plan(Want.CANCEL, job(complete=True), [], queued=False), finished).phase \
        == Phase.SUCCEEDED
    recreating = observation(Want.RUN, plan(Want.RUN, None, [], queued=False), None)
    assert (recreating.phase, recreating.reason) == (Phase.PENDING, Reason.RESUMED)


def test_cancelled_status_is_final_keeps_artifact_locations_and_names_its_condition() -> None:
    obs = observation(Want.CANCEL, plan(Want.CANCEL, None, [], queued=False), None)
    status = next_status({"phase": "Running", "conditions": []}, obs, generation=3, now="2026-01-01T00:00:00Z",
                         fallback_artifacts={"checkpoints": ["pvc://ckpt/j/checkpoints"]})
    assert status["phase"] == "Cancelled" and status["completionTime"] == "2026-01-01T00:00:00Z"
    assert status["artifacts"]["checkpoints"] == ["pvc://ckpt/j/checkpoints"]
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Cancelled"]["status"] == "True" and cond["Cancelled"]["reason"] == "CancelledByUser"
    later = next_status(status, observe(job(), [pod()], queued=False), generation=4, now="2026-01-01T00:01:00Z")
    assert later == status


def test_job_uri_at_step_resolves_to_the_kept_checkpoint_waits_for_it_or_says_why_not() -> None:
    from align_operator.upstream import resolve, upstream_name

    refs = {"spec.model.adapter.init": "sft@200"}
    kept = {"status": {"phase": "Running", "checkpoints": [
        {"step": 100, "uri": "pvc://ckpt/sft/checkpoints/checkpoint-100"},
        {"step": 200, "uri": "pvc://ckpt/sft/checkpoints/checkpoint-200"}]}}
    assert upstream_name("sft@200") == "sft"
    assert resolve(refs, {"sft@200": kept}).resolved == {"job://sft@200": "pvc://ckpt/sft/checkpoints/checkpoint-200"}
    early = {"status": {"phase": "Running", "checkpoints": [{"step": 100, "uri": "pvc://x"}]}}
    assert resolve(refs, {"sft@200": early}).waiting == ["sft@200"]          # not saved yet: wait
    gone = {"status": {"phase": "Succeeded", "checkpoints": [{"step": 300, "uri": "pvc://x"}]}}
    assert "did not keep a checkpoint at step 200 (kept: 300)" in resolve(refs, {"sft@200": gone}).failed[0]
    local = {"status": {"phase": "Running", "checkpoints": [{"step": 200}]}}
    assert "spec.checkpoints.volume" in resolve(refs, {"sft@200": local}).failed[0]


def test_job_uri_at_step_is_valid_spec_and_a_bad_one_names_the_field() -> None:
    from align_api import ManifestError, validate_document

    def doc(init: str) -> dict[str, Any]:
        return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "dpo"},
                "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny", "adapter": {"init": init}},
                         "data": {"train": {"uri": "data/sft.jsonl"}}}}

    job = validate_document(doc("job://sft@200"), file="dpo.yaml")
    assert job.spec.upstream_jobs() == {"spec.model.adapter.init": "sft@200"}
    with pytest.raises(ManifestError) as bad:
        validate_document(doc("job://sft@last"), file="dpo.yaml")
    assert "spec.model.adapter.init" in str(bad.value) and "job://<name>@<step>" in str(bad.value)
