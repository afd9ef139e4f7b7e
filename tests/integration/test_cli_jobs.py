"""alignctl's job commands against an emulated API server: a happy path and a failure path each."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from align_operator.cli import _register, app
from align_operator.client import AlignClient, build, manifest

from .emulated_cluster import AJ, EVENT, JOB, POD, EmulatedCluster

NS = "research"

_register()  # every alignctl command, as the console script loads them


@pytest.fixture(scope="module")
def cluster() -> Any:
    with EmulatedCluster() as emulated:
        yield emulated


@pytest.fixture()
def kubeconfig(cluster: EmulatedCluster, tmp_path: Path) -> Path:
    return cluster.kubeconfig(tmp_path / "kubeconfig", namespace=NS)


def run(kubeconfig: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(kubeconfig)], input=input)


def job_with_status(name: str, phase: str, **status: Any) -> dict[str, Any]:
    doc = manifest(build(name, algorithm="dpo", model="builtin://tiny", train="examples/data/pref.jsonl",
                         resources={"gpusPerNode": 0}))
    doc["metadata"].update(namespace=NS, creationTimestamp="2026-01-01T00:00:00Z", generation=1)
    doc["status"] = {"phase": phase, **status}
    return doc


def test_submit_applies_server_side_then_reports_configured(cluster: EmulatedCluster, kubeconfig: Path,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest(build("submit-me", algorithm="sft", model="builtin://tiny",
                                                  train="examples/data/sft.jsonl"))))
    first = run(kubeconfig, "submit", str(path), "--no-preflight")
    assert first.exit_code == 0, first.output
    assert "alignmentjob.align.dev/submit-me created" in first.output
    stored = cluster.get(AJ, NS, "submit-me")
    assert stored and stored["spec"]["algorithm"] == "sft"
    applies = [r for r in cluster.requests if r.method == "PATCH" and r.name == "submit-me"]
    assert applies and applies[0].headers["Content-Type"] == "application/apply-patch+yaml"
    assert applies[0].params["fieldManager"] == "alignctl"

    again = run(kubeconfig, "submit", "-", input=path.read_text())
    assert again.exit_code == 0, again.output
    assert "submit-me configured" in again.output


def test_submit_rejects_an_invalid_manifest_before_calling_the_server(cluster: EmulatedCluster, kubeconfig: Path,
                                                                      tmp_path: Path) -> None:
    doc = manifest(build("bad-job", algorithm="dpo", model="builtin://tiny", train="x.jsonl"))
    doc["spec"]["hyperparameters"] = {"numGenerations": 4}  # a GRPO knob on a DPO job
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run(kubeconfig, "submit", str(path), "--no-preflight")
    assert result.exit_code == 1
    assert "hyperparameters.numGenerations" in result.output
    assert cluster.get(AJ, NS, "bad-job") is None


def test_get_and_list_print_printer_columns(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "table-a", job_with_status("table-a", "Running", progress={"step": 4, "totalSteps": 10,
                                                                                    "percent": 40.0},
                                                   metrics={"loss": 0.6931},
                                                   usage={"gpuHours": 1.25, "podHours": 0.625}))
    cluster.put(AJ, NS, "table-b", job_with_status("table-b", "Succeeded"))
    listed = run(kubeconfig, "list", "-o", "wide")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.splitlines()
    assert header.split()[:8] == ["NAME", "PHASE", "ALGORITHM", "MODEL", "PROGRESS", "GPU-H", "POD-H", "AGE"]
    row_a = next(r for r in rows if r.startswith("table-a"))
    assert row_a.split()[1:7] == ["Running", "dpo", "builtin://tiny", "40%", "1.25", "0.625"]
    narrow = run(kubeconfig, "list").output.splitlines()[0].split()
    assert "GPU-H" in narrow and "POD-H" not in narrow       # priority 1: -o wide only, as in kubectl
    assert "4/10" in row_a and "0.6931" in row_a
    one = run(kubeconfig, "get", "table-b", "-o", "json")
    assert one.exit_code == 0 and '"phase": "Succeeded"' in one.output
    names = run(kubeconfig, "get", "-o", "name")
    assert "alignmentjob.align.dev/table-a" in names.output


def test_get_unknown_job_fails(kubeconfig: Path) -> None:
    result = run(kubeconfig, "get", "no-such-job")
    assert result.exit_code == 1
    assert 'alignmentjob "no-such-job" not found in namespace "research"' in result.output


def test_describe_shows_status_conditions_metrics_and_events(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    status = {
        "jobName": "desc-trainer", "startTime": "2026-01-01T00:01:00Z", "restarts": 1,
        "progress": {"step": 30, "totalSteps": 40, "percent": 75.0, "epoch": 0.75, "etaSeconds": 95},
        "metrics": {"loss": 0.41, "rewards/margins": 0.87},
        "conditions": [{"type": "Running", "status": "True", "reason": "PodsRunning", "message": "1/1 pods running",
                        "lastTransitionTime": "2026-01-01T00:01:00Z"}],
        "lastError": {"reason": "OOMKilled", "message": "trainer container ran out of memory"},
        "artifacts": {"checkpoints": ["pvc://ckpt/desc/step-20"]},
    }
    cluster.put(AJ, NS, "desc", job_with_status("desc", "Running", **status))
    cluster.put(EVENT, NS, "desc.1", {"type": "Normal", "reason": "JobCreated", "message": "created Job desc-trainer",
                                      "involvedObject": {"kind": "AlignmentJob", "name": "desc"},
                                      "lastTimestamp": "2026-01-01T00:00:30Z",
                                      "source": {"component": "align-operator"}})
    cluster.put(EVENT, NS, "other.1", {"type": "Normal", "reason": "Unrelated", "message": "not ours",
                                       "involvedObject": {"kind": "Pod", "name": "someone-else"}})
    result = run(kubeconfig, "describe", "desc")
    assert result.exit_code == 0, result.output
    for expected in ("Running", "desc-trainer", "30/40 steps", "75.0%", "rewards/margins", "0.87", "PodsRunning",
                     "OOMKilled", "pvc://ckpt/desc/step-20", "JobCreated", "align-operator"):
        assert expected in result.output, expected
    assert "Unrelated" not in result.output


def test_describe_shows_only_the_events_of_this_job_not_of_a_deleted_one_of_the_same_name(
        cluster: EmulatedCluster, kubeconfig: Path) -> None:
    """A job deleted and created again under the same name: the old job's (and old Job's) events are not listed."""
    job = job_with_status("again", "Running", jobName="again-trainer")
    job["metadata"]["uid"] = "uid-new"
    cluster.put(AJ, NS, "again", job)
    cluster.put(JOB, NS, "again-trainer", {"metadata": {"uid": "uid-job-new"}})

    def event(name: str, kind: str, about: str, uid: str, reason: str) -> None:
        cluster.put(EVENT, NS, name, {"type": "Normal", "reason": reason, "message": reason,
                                      "involvedObject": {"kind": kind, "name": about, "uid": uid},
                                      "lastTimestamp": "2026-01-01T00:00:30Z"})

    event("again.1", "AlignmentJob", "again", "uid-old", "EarlierJobsEvent")
    event("again.2", "AlignmentJob", "again", "uid-new", "ThisJobsEvent")
    event("again-trainer.1", "Job", "again-trainer", "uid-job-old", "EarlierTrainerEvent")
    event("again-trainer.2", "Job", "again-trainer", "uid-job-new", "ThisTrainerEvent")
    result = run(kubeconfig, "describe", "again")
    assert result.exit_code == 0, result.output
    assert "ThisJobsEvent" in result.output and "ThisTrainerEvent" in result.output
    assert "EarlierJobsEvent" not in result.output and "EarlierTrainerEvent" not in result.output


def test_describe_unknown_job_fails(kubeconfig: Path) -> None:
    result = run(kubeconfig, "describe", "ghost")
    assert result.exit_code == 1 and "not found" in result.output


def test_logs_print_the_rank0_trainer_pod(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "logged", job_with_status("logged", "Running", jobName="logged-trainer"))
    cluster.put(POD, NS, "logged-trainer-0-abc", {
        "metadata": {"labels": {"batch.kubernetes.io/job-name": "logged-trainer"},
                     "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
        "spec": {"containers": [{"name": "trainer"}]}})
    cluster.put(POD, NS, "unrelated-pod", {"metadata": {"labels": {"app": "web"}}})
    cluster.serve_log(NS, "logged-trainer-0-abc", "step 1 loss 0.69\nstep 2 loss 0.61\n")
    result = run(kubeconfig, "logs", "logged", "--tail", "50")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["step 1 loss 0.69", "step 2 loss 0.61"]


def test_logs_without_pods_fails_with_a_hint(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "podless", job_with_status("podless", "Succeeded", jobName="podless-trainer"))
    result = run(kubeconfig, "logs", "podless")
    assert result.exit_code == 1
    assert "no trainer pods" in result.output and "Succeeded" in result.output


def test_wait_follows_the_job_to_success(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "waited", job_with_status("waited", "Running", progress={"step": 1, "totalSteps": 2}))
    operator = AlignClient(kubeconfig=kubeconfig)

    def finish() -> None:  # plays the operator: writes the status a moment later
        time.sleep(0.5)
        operator.custom.patch_namespaced_custom_object_status(
            "align.dev", "v1alpha1", NS, "alignmentjobs", "waited", {"status": {"phase": "Succeeded"}},
            _content_type="application/merge-patch+json")

    threading.Thread(target=finish, daemon=True).start()
    result = run(kubeconfig, "wait", "waited", "--timeout", "20")
    assert result.exit_code == 0, result.output
    assert "alignmentjob.align.dev/waited Succeeded" in result.output


def test_wait_exit_code_mirrors_failure_and_timeout(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "doomed", job_with_status("doomed", "Failed", lastError={"reason": "Diverged",
                                                                                  "message": "loss is NaN at step 7"}))
    failed = run(kubeconfig, "wait", "doomed")
    assert failed.exit_code == 1
    assert "Failed" in failed.output and "loss is NaN at step 7" in failed.output
    cluster.put(AJ, NS, "slow", job_with_status("slow", "Running"))
    started = time.monotonic()
    slow = run(kubeconfig, "wait", "slow", "--timeout", "1")
    assert slow.exit_code == 124 and "timed out" in slow.output
    assert time.monotonic() - started < 10


def test_suspend_and_resume_flip_run_policy(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "pausable", job_with_status("pausable", "Running"))
    suspended = run(kubeconfig, "suspend", "pausable")
    assert suspended.exit_code == 0, suspended.output
    stored = cluster.get(AJ, NS, "pausable")
    assert stored and stored["spec"]["runPolicy"]["suspend"] is True
    assert stored["spec"]["algorithm"] == "dpo"  # a merge patch, not a replace
    resumed = run(kubeconfig, "resume", "pausable")
    assert resumed.exit_code == 0
    assert cluster.get(AJ, NS, "pausable")["spec"]["runPolicy"]["suspend"] is False  # type: ignore[index]


def test_suspend_a_finished_job_fails(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "done", job_with_status("done", "Succeeded"))
    result = run(kubeconfig, "suspend", "done")
    assert result.exit_code == 1 and "already Succeeded" in result.output


def test_cancel_sets_run_policy_cancel_and_delete_deletes(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "unwanted", job_with_status("unwanted", "Running"))
    result = run(kubeconfig, "cancel", "unwanted")
    assert result.exit_code == 0 and "cancelling" in result.output
    stored = cluster.get(AJ, NS, "unwanted")
    assert stored and stored["spec"]["runPolicy"]["cancel"] is True and stored["spec"]["algorithm"] == "dpo"
    cluster.put(AJ, NS, "finished", job_with_status("finished", "Cancelled"))
    twice = run(kubeconfig, "cancel", "finished")
    assert twice.exit_code == 1 and "already Cancelled" in twice.output
    deleted = run(kubeconfig, "cancel", "unwanted", "--delete")
    assert deleted.exit_code == 0 and cluster.get(AJ, NS, "unwanted") is None
    again = run(kubeconfig, "cancel", "unwanted")
    assert again.exit_code == 1 and "not found" in again.output


def test_unreachable_server_is_one_readable_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["get", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the API server" in result.output
    assert "Traceback" not in result.output


def test_logs_follow_waits_for_the_pod_of_a_fresh_job(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    cluster.put(AJ, NS, "fresh", job_with_status("fresh", "Pending"))

    def kubelet() -> None:  # the pod shows up a moment after the submit
        time.sleep(0.5)
        cluster.put(POD, NS, "fresh-trainer-0-xyz", {"metadata": {"labels": {"job-name": "fresh-trainer"}}})
        cluster.serve_log(NS, "fresh-trainer-0-xyz", "loading builtin://tiny\nstep 1/2\n")

    threading.Thread(target=kubelet, daemon=True).start()
    result = run(kubeconfig, "logs", "fresh", "-f", "--pod-wait", "10")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["loading builtin://tiny", "step 1/2"]


def test_shell_completion_lists_job_names(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    from align_operator.cli.jobs_cmd import complete_job_name

    cluster.put(AJ, NS, "complete-me", job_with_status("complete-me", "Running"))
    ctx = type("Ctx", (), {"params": {"kubeconfig": kubeconfig}})()
    assert "complete-me" in complete_job_name(ctx, "comp")  # type: ignore[arg-type]
    assert complete_job_name(type("Ctx", (), {"params": {"server": "http://127.0.0.1:9"}})(), "") == []  # type: ignore[arg-type]


def test_checkpoints_prints_each_kept_checkpoint_with_its_metrics(cluster: EmulatedCluster, kubeconfig: Path) -> None:
    kept = [{"step": 50, "time": "2026-01-01T00:01:00Z", "metrics": {"loss": 0.5},
             "uri": "pvc://ckpt/kept/checkpoints/checkpoint-50"},
            {"step": 100, "time": "2026-01-01T00:02:00Z", "metrics": {"loss": 0.25},
             "evaluation": {"eval_winrate": 0.625}, "uri": "pvc://ckpt/kept/checkpoints/checkpoint-100"}]
    cluster.put(AJ, NS, "kept", job_with_status("kept", "Running", checkpoints=kept))
    table = run(kubeconfig, "checkpoints", "kept")
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == ["STEP", "SAVED", "LOSS", "EVAL_WINRATE", "URI"]
    assert rows[1].split() == ["100", "2026-01-01T00:02:00Z", "0.25", "0.625", "pvc://ckpt/kept/checkpoints/checkpoint-100"]
    assert rows[0].split()[:3] == ["50", "2026-01-01T00:01:00Z", "0.5"]
    as_json = run(kubeconfig, "checkpoints", "kept", "-o", "json")
    assert [c["step"] for c in yaml.safe_load(as_json.output)] == [50, 100]
    cluster.put(AJ, NS, "fresh", job_with_status("fresh", "Running"))
    assert "no checkpoints" in run(kubeconfig, "checkpoints", "fresh").output


def test_events_follow_prints_each_event_once_in_time_order_until_the_job_ends(cluster: EmulatedCluster,
                                                                                kubeconfig: Path) -> None:
    job = job_with_status("feed", "Running", jobName="feed-trainer")
    job["metadata"]["uid"] = "uid-feed"
    cluster.put(AJ, NS, "feed", job)

    def event(name: str, reason: str, second: int, kind: str = "AlignmentJob", obj: str = "feed") -> None:
        cluster.put(EVENT, NS, name, {"type": "Normal", "reason": reason, "message": reason.lower(),
                                      "involvedObject": {"kind": kind, "name": obj,
                                                         **({"uid": "uid-feed"} if kind == "AlignmentJob" else {})},
                                      "lastTimestamp": f"2026-01-01T00:00:{second:02d}Z"})

    event("feed.2", "Scheduled", 2, kind="Pod", obj="feed-trainer-0-abcde")
    event("feed.1", "JobCreated", 1)
    event("feed.x", "Unrelated", 1, kind="Pod", obj="other-trainer-0-x")

    def later() -> None:
        time.sleep(1.0)
        event("feed.3", "CheckpointSaved", 3)
        cluster.put(AJ, NS, "feed", {**job, "status": {**job["status"], "phase": "Cancelled"}})

    threading.Thread(target=later, daemon=True).start()
    result = run(kubeconfig, "events", "feed", "--follow", "--interval", "0.2", "-o", "json")
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.output.splitlines()]
    assert [(e["reason"], e["object"]) for e in entries] == [
        ("JobCreated", "AlignmentJob/feed"), ("Scheduled", "Pod/feed-trainer-0-abcde"),
        ("CheckpointSaved", "AlignmentJob/feed")]
    table = run(kubeconfig, "events", "feed")
    assert table.exit_code == 0 and "CheckpointSaved" in table.output and "Unrelated" not in table.output
