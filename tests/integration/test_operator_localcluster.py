"""The real Kopf operator over HTTP against the emulated API server, with a fake trainer as the pods' command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from align_localcluster import LocalCluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAKE_TRAINER = [sys.executable, "-m", "align_localcluster.fake_trainer", "--config", "/etc/align/job.yaml",
                "--output", "/workspace/output"]
FAST = {"scrape_interval_seconds": 0.3, "status_interval_seconds": 1.0, "upstream_poll_seconds": 0.5}


def aj(name: str, *, steps: int = 3, step_ms: int = 50, exit_code: int = 0, message: str = "json",
       **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"algorithm": "sft", "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "data/sft.jsonl"}}, "resources": {"gpusPerNode": 0}}
    body.update(spec)
    labels = {"fake.align.dev/steps": str(steps), "fake.align.dev/step-ms": str(step_ms),
              "fake.align.dev/exit-code": str(exit_code), "fake.align.dev/message": message}
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": name, "labels": labels}, "spec": body}


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("local"), trainer_command=FAKE_TRAINER, gpus=0, settings=FAST) as box:
        yield box


def conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in job["status"].get("conditions", [])}


def test_create_run_succeed_with_progress_artifacts_and_events(sb: LocalCluster) -> None:
    sb.apply(aj("ok", steps=12, step_ms=150))
    trainer = sb.wait_for(lambda: sb.get("ok-trainer", kind="Job"), timeout=20)
    assert trainer["spec"]["completionMode"] == "Indexed"
    owner = sb.get("ok")
    for kind, name in (("Job", "ok-trainer"), ("ConfigMap", "ok-config"), ("Service", "ok-trainer")):
        child = sb.get(name, kind=kind)
        assert child is not None, kind
        assert child["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    # Progress is scraped while the trainer runs.
    running = sb.wait_for(lambda: (j := sb.get("ok")) and 0 < ((j["status"].get("progress") or {}).get("step") or 0)
                          < 12 and j, timeout=30)
    assert running["status"]["phase"] == "Running" and running["status"]["progress"]["totalSteps"] == 12
    assert "loss" in running["status"]["metrics"]
    done = sb.wait("ok", timeout=30)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["percent"] == 100.0 and status["progress"]["step"] == 12
    assert status["artifacts"]["adapter"].startswith("file://")
    assert Path(status["artifacts"]["adapter"][len("file://"):], "adapter_config.json").is_file()
    assert status["startTime"] <= status["completionTime"] and status["restarts"] == 0
    cond = conditions(done)
    assert cond["Succeeded"]["status"] == "True" and cond["Succeeded"]["observedGeneration"] == 1
    assert cond["Running"]["status"] == "False" and cond["Created"]["reason"] == "JobCreated"
    # Kopf posts events from a queue of its own, after the status write that sb.wait saw
    sb.wait_for(lambda: {"JobCreated", "PodsRunning", "TrainingSucceeded"} <= {e["reason"] for e in sb.events("ok")},
                timeout=10, message=f"events: {[e['reason'] for e in sb.events('ok')]}")


@pytest.mark.parametrize("code,message,reason,text", [
    (12, "json", "Diverged", "loss became NaN"),
    (11, "text", "DataError", "field 'chosen' is missing"),
])
def test_trainer_error_fails_fast_with_reason_and_message(sb: LocalCluster, code: int, message: str, reason: str,
                                                          text: str) -> None:
    name = f"fail-{code}"
    sb.apply(aj(name, exit_code=code, message=message))
    status = sb.wait(name, timeout=30)["status"]
    assert status["phase"] == "Failed" and status["lastError"]["reason"] == reason
    assert text in status["lastError"]["message"]
    assert conditions(sb.get(name))["Failed"]["reason"] == reason
    assert len(sb.list("Pod", labels=f"align.dev/job={name}")) == 1  # podFailurePolicy: no retry
    # Kopf posts events from a queue of its own, after the status write that sb.wait saw
    sb.wait_for(lambda: any(e["type"] == "Warning" and e["reason"] == reason for e in sb.events(name)), timeout=10,
                message=f"no Warning event {reason}")


def test_a_trainer_warning_becomes_a_condition_and_one_event(sb: LocalCluster) -> None:
    # the trainer's align_trainer_warning{reason="NoLearningSignal"} gauge (issue 22 item 8), scraped while it runs
    body = aj("flat", steps=10, step_ms=150)
    body["metadata"]["labels"]["fake.align.dev/warning"] = "NoLearningSignal"
    sb.apply(body)
    # a scrape sees it while the pod runs; the termination message carries it again: still one event
    sb.wait_for(lambda: (j := sb.get("flat")) and j.get("status", {}).get("phase") == "Running"
                and "LearningSignal" in conditions(j), timeout=30)
    done = sb.wait("flat", timeout=40)
    assert done["status"]["phase"] == "Succeeded"  # a warning: the run goes on
    cond = conditions(done)["LearningSignal"]
    assert cond["status"] == "False" and cond["reason"] == "NoLearningSignal" and "'A: bowling' vs 'A'" in cond["message"]
    warnings = [e for e in sb.events("flat") if e["reason"] == "NoLearningSignal"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning" and "'A: bowling'" in warnings[0]["message"]
    assert "warning" not in done["status"]["metrics"]


def test_a_warning_no_scrape_saw_still_becomes_the_condition_and_one_event(sb: LocalCluster) -> None:
    # the run ends before any scrape could see the warning (the fake trainer never serves it): only its success
    # termination message carries it, as the trainer's does for a short run that learnt nothing
    body = aj("short", steps=2, step_ms=50)
    body["metadata"]["labels"].update({"fake.align.dev/warning": "NoLearningSignal",
                                       "fake.align.dev/warning-at": "end"})
    sb.apply(body)
    done = sb.wait("short", timeout=40)
    assert done["status"]["phase"] == "Succeeded"
    cond = conditions(done)["LearningSignal"]
    assert cond["status"] == "False" and cond["reason"] == "NoLearningSignal"
    assert "'A: bowling' vs 'A'" in cond["message"]
    sb.wait_for(lambda: [e for e in sb.events("short") if e["reason"] == "NoLearningSignal"], timeout=10)
    time.sleep(1.0)  # a second event would come from the next pass (status_interval_seconds)
    warnings = [e for e in sb.events("short") if e["reason"] == "NoLearningSignal"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning" and warnings[0]["message"] == cond["message"]


def test_transient_errors_retry_until_the_backoff_limit(sb: LocalCluster) -> None:
    sb.apply(aj("flaky", exit_code=1, runPolicy={"backoffLimit": 1}))
    status = sb.wait("flaky", timeout=40)["status"]
    assert status["phase"] == "Failed" and status["lastError"]["reason"] == "BackoffLimitExceeded"
    assert "CUDA error" in status["lastError"]["message"] and status["restarts"] >= 2
    assert len(sb.list("Pod", labels="align.dev/job=flaky")) == 2


def test_invalid_spec_fails_with_the_field_path_then_recovers_when_fixed(sb: LocalCluster) -> None:
    bad = aj("bad", algorithm="dpo", hyperparameters={"beta": -1})
    sb.apply(bad)
    status = sb.wait("bad", timeout=20)["status"]
    assert status["phase"] == "Failed" and status["lastError"]["reason"] == "InvalidSpec"
    assert "spec.hyperparameters.beta" in status["lastError"]["message"]
    assert sb.get("bad-trainer", kind="Job") is None
    sb.patch("bad", {"spec": {"hyperparameters": {"beta": 0.1}}})
    assert sb.wait("bad", until=["Succeeded"], timeout=30)["status"]["phase"] == "Succeeded"


def test_suspend_and_resume(sb: LocalCluster) -> None:
    sb.apply(aj("pausable", runPolicy={"suspend": True}))
    sb.wait("pausable", until=["Suspended"], timeout=20)
    # created suspended: no Job until resume, so a server that prunes Job.spec.suspend starts no pod either
    assert sb.get("pausable-trainer", kind="Job") is None and sb.get("pausable-config", kind="ConfigMap")
    assert sb.list("Pod", labels="align.dev/job=pausable") == []
    sb.patch("pausable", {"spec": {"runPolicy": {"suspend": False}}})
    assert sb.wait("pausable", timeout=30)["status"]["phase"] == "Succeeded"
    assert {"SuspendedByUser", "Resumed"} <= {e["reason"] for e in sb.events("pausable")}


def test_delete_cascades_to_children(sb: LocalCluster) -> None:
    sb.apply(aj("doomed", steps=200, step_ms=100))
    sb.wait("doomed", until=["Running"], timeout=20)
    assert sb.delete("doomed")
    sb.wait_for(lambda: sb.get("doomed") is None and sb.get("doomed-trainer", kind="Job") is None
                and sb.get("doomed-config", kind="ConfigMap") is None
                and sb.get("doomed-trainer", kind="Service") is None
                and not sb.list("Pod", labels="align.dev/job=doomed"), timeout=20)


def test_unschedulable_and_image_pull_failures_are_named(sb: LocalCluster) -> None:
    sb.apply(aj("greedy", resources={"gpusPerNode": 1}))
    sb.apply(aj("noimage", resources={"gpusPerNode": 0, "image": "invalid.example/trainer:nope"}))
    for name, reason in (("greedy", "Unschedulable"), ("noimage", "ImagePullFailed")):
        job = sb.wait_for(lambda: (j := sb.get(name)) and ((j.get("status") or {}).get("lastError") or {}).get(
            "reason") == reason and j, timeout=20)
        assert job["status"]["phase"] == "Pending" and conditions(job)["Running"]["reason"] == reason
    sb.delete("greedy")
    sb.delete("noimage")


def test_secrets_reach_the_trainer_by_reference_and_a_missing_one_is_named(sb: LocalCluster) -> None:
    secrets = {"huggingFaceToken": {"name": "hf", "key": "token"}}
    sb.apply(aj("needs-missing", secrets=secrets))
    blocked = sb.wait_for(lambda: (j := sb.get("needs-missing")) and ((j.get("status") or {}).get("lastError") or {})
                          .get("reason") == "ConfigError" and j, timeout=20)
    assert blocked["status"]["phase"] == "Pending"
    assert blocked["status"]["lastError"]["message"] == 'secret "hf" not found'
    sb.delete("needs-missing")
    sb.create_secret("hf", {"token": "hf_s3cr3t"})
    sb.apply(aj("with-secret", secrets=secrets))
    assert sb.wait("with-secret", timeout=30)["status"]["phase"] == "Succeeded"
    env = sb.get("with-secret-trainer", kind="Job")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "hf_s3cr3t" not in str(env)  # the Job holds a reference, the pod process gets the value
    pod = sb.list("Pod", labels="align.dev/job=with-secret")[0]["metadata"]["name"]
    assert "secrets set: HF_TOKEN" in sb.logs(pod)


def test_three_stage_pipeline_applied_at_once_runs_in_order(sb: LocalCluster) -> None:
    docs = []
    for path in sorted((REPO / "examples" / "pipelines").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["labels"] = {"fake.align.dev/steps": "2", "fake.align.dev/step-ms": "50"}
        docs.append(doc)
    for doc in reversed(docs):  # the consumer first: it must wait anyway
        sb.apply(doc)
    assert sb.wait("pipeline-ppo", until=["Waiting"], timeout=20)["status"]["conditions"][0]["reason"] == \
        "UpstreamPending"
    ppo = sb.wait("pipeline-ppo", timeout=60)["status"]
    sft, reward = sb.get("pipeline-sft")["status"], sb.get("pipeline-reward")["status"]
    assert ppo["phase"] == sft["phase"] == reward["phase"] == "Succeeded"
    assert ppo["resolvedUris"] == {"job://pipeline-sft": sft["artifacts"]["adapter"],
                                   "job://pipeline-reward": reward["artifacts"]["adapter"]}
    assert ppo["startTime"] >= max(sft["completionTime"], reward["completionTime"])
    env = {e["name"]: e.get("value") for e in
           sb.get("pipeline-ppo-trainer", kind="Job")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "pipeline-sft" in env["ALIGN_RESOLVED_URIS"]


def test_failed_upstream_fails_the_downstream(sb: LocalCluster) -> None:
    sb.apply(aj("up-broken", exit_code=11))
    sb.apply(aj("down", model={"base": "builtin://tiny", "adapter": {"init": "job://up-broken"}}))
    status = sb.wait("down", timeout=30)["status"]
    assert status["phase"] == "Failed" and status["lastError"]["reason"] == "UpstreamFailed"
    assert "up-broken" in status["lastError"]["message"] and sb.get("down-trainer", kind="Job") is None


def test_injected_api_errors_converge_to_one_job(sb: LocalCluster) -> None:
    sb.emulator.inject(503, times=3, method="POST", resource="jobs")
    sb.emulator.inject(500, times=2, method="POST", resource="configmaps")
    sb.emulator.inject(429, times=3, method="PATCH", resource="alignmentjobs", subresource="status")
    sb.emulator.inject(409, times=1, method="POST", resource="services")
    sb.apply(aj("stormy"))
    assert sb.wait("stormy", timeout=60)["status"]["phase"] == "Succeeded"
    assert len(sb.list("Job", labels="align.dev/job=stormy")) == 1


def test_operator_metrics(sb: LocalCluster) -> None:
    text = generate_latest(REGISTRY).decode()
    assert 'align_operator_jobs{phase="Succeeded"}' in text
    succeeded = [line for line in text.splitlines() if line.startswith('align_operator_jobs{phase="Succeeded"}')]
    assert float(succeeded[0].split()[-1]) >= 1
    assert "align_operator_reconcile_duration_seconds_count" in text
    assert 'align_operator_trainer_scrapes_total{result="ok"}' in text


def test_operator_killed_and_restarted_with_50_jobs_in_flight(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, operator="process", node_agent=False, settings=FAST) as box:
        for index in range(50):
            box.apply(aj(f"flight-{index:02d}"))
        box.wait_for(lambda: len(box.list("Job")) >= 5, timeout=60)
        box.kill_operator()
        in_flight = len(box.list("Job"))
        box.start_operator()
        box.wait_for(lambda: all((j.get("status") or {}).get("phase") == "Pending" for j in box.list())
                     and len(box.list()) == 50, timeout=90)
        jobs = box.list("Job")
        assert len(jobs) == 50 and in_flight <= 50
        for index in range(50):
            assert len(box.list("Job", labels=f"align.dev/job=flight-{index:02d}")) == 1
        assert len(box.list("ConfigMap")) == 50 and len(box.list("Service")) == 50


@pytest.mark.slow  # ~40 s, most of it the local cluster's own start and stop
def test_a_transient_unschedulable_leaves_last_error_when_the_job_then_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod waits for a GPU (lastError Unschedulable), a GPU node frees up, the job succeeds: lastError is gone
    from the status and the Unschedulable warning stays in the job's events."""
    from align_localcluster import nodeagent
    monkeypatch.setattr(nodeagent, "RECHECK_SECONDS", 0.3)  # the agent re-tries an unschedulable pod this often
    with LocalCluster(tmp_path, trainer_command=FAKE_TRAINER, gpus=0, settings=FAST) as box:
        box.apply(aj("waits-for-gpu", resources={"gpusPerNode": 1}))
        blocked = box.wait_for(lambda: (j := box.get("waits-for-gpu")) and (
            (j.get("status") or {}).get("lastError") or {}).get("reason") == "Unschedulable" and j, timeout=20)
        assert blocked["status"]["phase"] == "Pending"
        box._cluster.agent.gpus = 1  # a GPU becomes available
        status = box.wait("waits-for-gpu", timeout=30)["status"]
        events = box.events("waits-for-gpu")
    assert status["phase"] == "Succeeded" and "lastError" not in status, status
    assert conditions({"status": status})["Running"]["reason"] != "Unschedulable"
    assert any(e["type"] == "Warning" and e["reason"] == "Unschedulable" for e in events), events
