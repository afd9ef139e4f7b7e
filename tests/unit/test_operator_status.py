"""Pure status logic: Job + pods -> phase/reason, conditions, progress, termination messages, upstreams."""

from __future__ import annotations

import json
from typing import Any

from align_api.constants import Phase, Reason
from align_localcluster.jobcontroller import compress_indexes, failure_action, plan_job
from align_operator.status.compute import next_status
from align_operator.status.conditions import phase_conditions, set_condition
from align_operator.status.exposition import parse
from align_operator.status.observe import observe
from align_operator.status.progress import completed, key_metrics, parse_metrics, progress
from align_operator.status.termination import from_terminated
from align_operator.upstream import resolve

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def job(*conditions: tuple[str, str, str], suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x-trainer"}, "spec": {"suspend": suspend},
            "status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m}
                                      for t, r, m in conditions], **status}}


def pod(phase: str, *, index: int = 0, terminated: dict[str, Any] | None = None,
        waiting: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
        port: str | None = "9400") -> dict[str, Any]:
    state = {"terminated": terminated} if terminated else {"waiting": waiting} if waiting else {"running": {}}
    annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
    if port:
        annotations["prometheus.io/port"] = port
    return {"metadata": {"name": f"x-{index}", "namespace": "ns", "annotations": annotations},
            "status": {"phase": phase, "podIP": "10.0.0.7", "startTime": NOW,
                       "containerStatuses": [{"name": "trainer", "state": state, "restartCount": 0}],
                       "conditions": conditions or []}}


def test_running_pod_gives_running_and_a_metrics_endpoint() -> None:
    obs = observe(job(), [pod("Running")], queued=False)
    assert obs.phase == Phase.RUNNING and obs.reason == Reason.PODS_RUNNING
    assert obs.metrics_endpoint == ("10.0.0.7", 9400, "/metrics")


def test_complete_job_with_artifacts_from_the_termination_message() -> None:
    message = json.dumps({"adapter": "s3://b/out/final", "totalSteps": 40, "finalMetrics": {"loss": 0.3}})
    obs = observe(job(("Complete", "CompletionsReached", "")), [pod("Succeeded", terminated={"exitCode": 0,
                                                                                             "message": message})],
                  queued=False)
    assert obs.phase == Phase.SUCCEEDED
    status = next_status({"progress": {"step": 30, "totalSteps": 40}}, obs, generation=1, now=NOW)
    assert status["phase"] == "Succeeded" and status["artifacts"] == {"adapter": "s3://b/out/final"}
    assert status["progress"]["percent"] == 100.0 and status["progress"]["step"] == 40
    assert status["metrics"]["loss"] == 0.3
    assert "evaluation" not in status


def test_evaluation_from_the_termination_message_reaches_status_and_a_condition() -> None:
    message = json.dumps({"artifacts": {"adapter": "file:///out/final", "report": "file:///out/final/evaluation/report.md"},
                          "steps": 16, "totalSteps": 16, "evaluation": {"winRate": 0.9, "rewardDelta": 0.4,
                                                                         "lengthRewardCorrelation": None}})
    obs = observe(job(("Complete", "CompletionsReached", "")), [pod("Succeeded", terminated={"exitCode": 0,
                                                                                             "message": message})],
                  queued=False)
    status = next_status({}, obs, generation=3, now=NOW)
    assert status["evaluation"] == {"winRate": 0.9, "rewardDelta": 0.4, "lengthRewardCorrelation": None}
    assert status["artifacts"]["report"].endswith("report.md")
    evaluated = [c for c in status["conditions"] if c["type"] == "Evaluated"]
    assert evaluated and evaluated[0]["status"] == "True" and evaluated[0]["reason"] == Reason.EVALUATION_PASSED
    assert evaluated[0]["observedGeneration"] == 3


def test_pod_failure_policy_maps_exit_codes_to_reasons() -> None:
    failed = pod("Failed", terminated={"exitCode": 12, "reason": "Error",
                                       "message": json.dumps({"reason": "Diverged", "message": "loss is NaN at step 7"})})
    obs = observe(job(("Failed", "PodFailurePolicy", "Container trainer ... exit code 12")), [failed], queued=False)
    assert obs.phase == Phase.FAILED and obs.reason == Reason.DIVERGED
    status = next_status({}, obs, generation=2, now=NOW)
    assert status["lastError"]["reason"] == "Diverged" and status["lastError"]["message"] == "loss is NaN at step 7"
    failed_condition = [c for c in status["conditions"] if c["type"] == "Failed"][0]
    assert failed_condition["status"] == "True" and failed_condition["observedGeneration"] == 2


def test_plain_text_termination_message_and_data_error_code() -> None:
    failed = pod("Failed", terminated={"exitCode": 11, "message": "train.jsonl:3: field 'chosen' is missing"})
    obs = observe(job(("Failed", "PodFailurePolicy", "")), [failed], queued=False)
    assert obs.reason == Reason.DATA_ERROR and "train.jsonl:3" in obs.message


def test_oom_and_backoff_limit() -> None:
    failed = pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled", "message": ""})
    obs = observe(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                  [failed], queued=False)
    assert obs.reason == Reason.BACKOFF_LIMIT_EXCEEDED
    assert obs.last_failure is not None and obs.last_failure.reason == Reason.OOM_KILLED
    status = next_status({}, obs, generation=1, now=NOW)
    assert status["lastError"]["reason"] == "BackoffLimitExceeded"


def test_deadline_exceeded() -> None:
    obs = observe(job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")), [], queued=False)
    assert obs.phase == Phase.FAILED and obs.reason == Reason.DEADLINE_EXCEEDED


def test_image_pull_and_unschedulable_keep_pending_with_a_reason() -> None:
    obs = observe(job(), [pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})], queued=False)
    assert obs.phase == Phase.PENDING and obs.reason == Reason.IMAGE_PULL_FAILED
    status = next_status({}, obs, generation=1, now=NOW)
    assert status["lastError"]["reason"] == "ImagePullFailed"
    running = [c for c in status["conditions"] if c["type"] == "Running"][0]
    assert running["status"] == "False" and running["reason"] == "ImagePullFailed"
    unschedulable = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": "0/3 nodes: Insufficient nvidia.com/gpu"}])
    assert observe(job(), [unschedulable], queued=False).reason == Reason.UNSCHEDULABLE


def test_suspended_and_queued() -> None:
    assert observe(job(("Suspended", "JobSuspended", "")), [], queued=False).phase == Phase.SUSPENDED
    assert observe(job(suspend=True), [], queued=True).phase == Phase.QUEUED


def test_retry_keeps_the_last_error_visible_and_counts_restarts() -> None:
    failed = pod("Failed", terminated={"exitCode": 1, "message": "CUDA error", "finishedAt": NOW})
    obs = observe(job(failed=1), [failed, pod("Running")], queued=False)
    assert obs.phase == Phase.RUNNING and obs.restarts == 1
    status = next_status({}, obs, generation=1, now=LATER)
    assert status["lastError"] == {"reason": "TrainerError", "message": "CUDA error", "time": NOW}


def test_terminal_status_is_final() -> None:
    final = {"phase": "Succeeded", "conditions": []}
    obs = observe(job(), [pod("Running")], queued=False)
    assert next_status(final, obs, generation=1, now=NOW) == final


def test_conditions_keep_transition_time_unless_status_flips() -> None:
    conds = set_condition([], "Running", "True", "PodsRunning", "", 1, NOW)
    again = set_condition(conds, "Running", "True", "PodsRunning", "2 pods", 2, LATER)
    assert again[0]["lastTransitionTime"] == NOW and again[0]["observedGeneration"] == 2
    flipped = phase_conditions(again, Phase.SUCCEEDED, "TrainingSucceeded", "", 2, LATER)
    by_type = {c["type"]: c for c in flipped}
    assert by_type["Running"]["status"] == "False" and by_type["Running"]["lastTransitionTime"] == LATER
    assert by_type["Succeeded"]["status"] == "True"


def test_prometheus_text_to_progress_and_metrics() -> None:
    text = "\n".join([
        "# TYPE align_trainer_step gauge", 'align_trainer_step{job="x"} 25',
        "# TYPE align_trainer_total_steps gauge", 'align_trainer_total_steps{job="x"} 100',
        "# TYPE align_trainer_epoch gauge", 'align_trainer_epoch{job="x"} 0.5',
        "# TYPE align_trainer_loss gauge", 'align_trainer_loss{job="x"} NaN',
        "# TYPE align_trainer_rewards_margins gauge", 'align_trainer_rewards_margins{job="x"} 0.8',
        "# TYPE python_gc_objects_collected_total counter", "python_gc_objects_collected_total 3",
    ]) + "\n"
    values = parse_metrics(parse(text))
    assert values["step"] == 25 and "python_gc_objects_collected_total" not in values
    prog = progress(values, elapsed_seconds=50.0, now=NOW)
    assert prog == {"step": 25, "totalSteps": 100, "percent": 25.0, "etaSeconds": 150, "epoch": 0.5, "updatedAt": NOW}
    assert key_metrics(values) == {"loss": None, "rewards_margins": 0.8}  # NaN is null in JSON, not hidden
    assert completed(prog, LATER)["percent"] == 100.0


def test_generic_and_eval_series_keep_their_names() -> None:
    text = ('align_trainer_up{job="x"} 1\n'
            'align_trainer_loss{job="x",split="train"} 0.5\n'
            'align_trainer_loss{job="x",split="eval"} 0.7\n'
            'align_trainer_metric{job="x",split="train",name="objective_kl"} 0.02\n'
            'align_trainer_metric{job="x",split="train",name="val_ratio"} 1.01\n')
    values = parse_metrics(parse(text))
    assert values == {"loss": 0.5, "eval_loss": 0.7, "objective_kl": 0.02, "val_ratio": 1.01}


def test_termination_message_parsing() -> None:
    result = from_terminated({"exitCode": 0, "message": json.dumps({"artifacts": {"adapter": "pvc://c/x/final",
                                                                                   "checkpoints": ["a", "b"]}})})
    assert result.artifacts == {"adapter": "pvc://c/x/final", "checkpoints": ["a", "b"]}
    assert from_terminated({"exitCode": 13, "message": "gate failed"}).reason == Reason.EVALUATION_GATE_FAILED
    trainer_style = from_terminated({"exitCode": 11, "message": "DataError: data/x.jsonl:3: field 'chosen' missing"})
    assert trainer_style.reason == "DataError" and trainer_style.message == "data/x.jsonl:3: field 'chosen' missing"


def test_upstream_resolution() -> None:
    refs = {"spec.model.adapter.init": "sft", "spec.grader(rm).model": "rm"}
    waiting = resolve(refs, {"sft": {"status": {"phase": "Running"}}, "rm": None})
    assert sorted(waiting.waiting) == ["rm", "sft"] and not waiting.ready
    done = resolve(refs, {"sft": {"status": {"phase": "Succeeded", "artifacts": {"adapter": "s3://b/sft"}}},
                          "rm": {"status": {"phase": "Succeeded", "artifacts": {"adapter": "s3://b/rm"}}}})
    assert done.ready and done.resolved == {"job://sft": "s3://b/sft", "job://rm": "s3://b/rm"}
    failed = resolve(refs, {"sft": {"status": {"phase": "Failed", "lastError": {"reason": "DataError",
                                                                                 "message": "bad row"}}},
                            "rm": {"status": {"phase": "Succeeded"}}})
    assert len(failed.failed) == 2 and "DataError" in failed.failed[0] and "no adapter" in failed.failed[1]


# --- the local cluster's Job controller (pure part) -------------------------------------------------------------
def _k8s_job(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x-trainer", "namespace": "ns", "uid": "u1"},
            "spec": {"completions": 2, "parallelism": 2, "backoffLimit": 1, "template": {"spec": {}}, **spec},
            "status": {}}


def test_job_controller_creates_one_pod_per_index_and_completes() -> None:
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    assert plan_job(_k8s_job(), [], now).create == [0, 1]
    done = [pod("Succeeded", index=0), pod("Succeeded", index=1)]
    plan = plan_job(_k8s_job(), done, now)
    assert any(c["type"] == "Complete" for c in plan.status["conditions"]) and plan.status["completedIndexes"] == "0-1"


def test_job_controller_pod_failure_policy_and_backoff() -> None:
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [12]}}]}
    diverged = pod("Failed", terminated={"exitCode": 12})
    assert failure_action(policy, diverged)[0] == "FailJob"
    plan = plan_job(_k8s_job(podFailurePolicy=policy), [diverged, pod("Running", index=1)], now)
    assert plan.status["conditions"][-1]["reason"] == "PodFailurePolicy" and plan.delete == ["x-1"]
    transient = [pod("Failed", terminated={"exitCode": 1}), pod("Failed", terminated={"exitCode": 1})]
    plan = plan_job(_k8s_job(podFailurePolicy=policy), transient, now)
    assert plan.status["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    suspended = plan_job(_k8s_job(suspend=True), [pod("Running")], now)
    assert suspended.delete == ["x-0"] and suspended.create == []
    assert compress_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def test_local_pod_command_maps_pod_paths_but_not_the_host_interpreter(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Regression: with the host's venv under /tmp and a pod volume at /tmp, the interpreter stayed unmapped."""
    import sys
    from pathlib import Path

    from align_localcluster.kubelet import pod_argv

    monkeypatch.setattr(sys, "executable", "/tmp/ci-clone/.venv/bin/python")
    mounts = [("/etc/align", tmp_path / "config"), ("/tmp", tmp_path / "tmp")]
    argv = pod_argv(["python", "-m", "align_trainer", "--config", "/etc/align/job.yaml", "--out=/tmp/$(JOB)"],
                    {"JOB": "dpo"}, mounts)
    assert argv == ["/tmp/ci-clone/.venv/bin/python", "-m", "align_trainer", "--config",
                    str(tmp_path / "config" / "job.yaml"), f"--out={Path(tmp_path / 'tmp' / 'dpo')}"]


UNSCHEDULABLE = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                  "message": "0/3 nodes: Insufficient nvidia.com/gpu"}]


def test_a_blocked_reason_leaves_last_error_once_the_pod_moves_on() -> None:
    """lastError explains the current state: Unschedulable/ImagePullFailed stay while they block, and go once the pod
    is scheduled (still Pending), runs, or the job succeeds; the Running condition follows."""
    blocked = next_status({}, observe(job(), [pod("Pending", conditions=UNSCHEDULABLE)], queued=False),
                          generation=1, now=NOW)
    assert blocked["lastError"]["reason"] == "Unschedulable"
    creating = pod("Pending", waiting={"reason": "ContainerCreating"})  # scheduled, not running yet
    scheduled = next_status(blocked, observe(job(), [creating], queued=False), generation=1, now=LATER)
    assert "lastError" not in scheduled and scheduled["phase"] == "Pending"
    running = next_status(blocked, observe(job(), [pod("Running")], queued=False), generation=1, now=LATER)
    assert "lastError" not in running
    assert [c for c in running["conditions"] if c["type"] == "Running"][0]["reason"] == "PodsRunning"
    pulled = next_status({}, observe(job(), [pod("Pending", waiting={"reason": "ImagePullBackOff"})], queued=False),
                         generation=1, now=NOW)
    assert "lastError" not in next_status(pulled, observe(job(), [pod("Running")], queued=False), generation=1, now=LATER)


def test_success_after_a_retry_clears_last_error_and_keeps_the_restart_count() -> None:
    failed = pod("Failed", terminated={"exitCode": 1, "message": "CUDA error", "finishedAt": NOW})
    retrying = next_status({}, observe(job(failed=1), [failed, pod("Running")], queued=False), generation=1, now=NOW)
    assert retrying["lastError"]["message"] == "CUDA error"
    done = observe(job(("Complete", "CompletionsReached", ""), failed=1),
                   [failed, pod("Succeeded", terminated={"exitCode": 0, "message": "{}"})], queued=False)
    status = next_status(retrying, done, generation=1, now=LATER)
    assert status["phase"] == "Succeeded" and "lastError" not in status and status["restarts"] == 1


def test_errors_the_status_logic_does_not_own_stay_until_their_owner_clears_them() -> None:
    """Forbidden (set and cleared by the reconcile handler) is not a pod state: a running pod does not clear it."""
    forbidden = {"lastError": {"reason": "Forbidden", "message": "cannot list pods", "time": NOW}}
    status = next_status(forbidden, observe(job(), [pod("Running")], queued=False), generation=1, now=LATER)
    assert status["lastError"]["reason"] == "Forbidden"
