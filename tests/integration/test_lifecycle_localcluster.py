"""Pause, resume, cancel and budgets end to end on the emulated cluster (a server with Job suspend): the fake trainer
checkpoints on SIGTERM into its checkpoint volume and the next pod continues from there."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from align_localcluster import LocalCluster
from align_operator.cli import _register, app
from tests.integration.test_operator_localcluster import FAKE_TRAINER, FAST, aj

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("lifecycle"), operator="process", trainer_command=FAKE_TRAINER, gpus=0,
                 settings=FAST) as box:
        yield box


def steps_written(sb: LocalCluster, name: str, *, missing_ok: bool = False) -> list[int]:
    """The steps in the job's metrics.jsonl on its checkpoint volume (one line per step); `missing_ok`: [] before
    the first step, instead of failing."""
    found = list(sb.workdir.glob(f"**/volumes/*/ckpt/{name}/metrics.jsonl"))
    if missing_ok and not found:
        return []
    (path,) = found
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def live_pods(sb: LocalCluster, name: str) -> list[dict[str, Any]]:
    return [p for p in sb.list("Pod", labels=f"align.dev/job={name}")
            if p["status"].get("phase") not in ("Succeeded", "Failed")]


def step_of(sb: LocalCluster, name: str) -> int:
    return int((((sb.get(name) or {}).get("status") or {}).get("progress") or {}).get("step") or 0)


def conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in job["status"].get("conditions", [])}


def test_pause_mid_run_stops_the_pods_and_resume_finishes_the_same_run_with_one_history(sb: LocalCluster) -> None:
    sb.apply(aj("pause", steps=50, step_ms=120, checkpoints={"volume": "ckpt"}))
    sb.wait_for(lambda: step_of(sb, "pause") >= 3, timeout=30)
    sb.patch("pause", {"spec": {"runPolicy": {"suspend": True}}})
    paused = sb.wait("pause", until=["Suspended"], timeout=30)
    assert live_pods(sb, "pause") == []          # Suspended is claimed only once no pod runs
    assert sb.get("pause-trainer", kind="Job")["spec"]["suspend"] is True
    cond = conditions(paused)["Suspended"]
    assert cond["status"] == "True" and cond["reason"] == "SuspendedByUser"
    reached = steps_written(sb, "pause")
    assert 3 <= len(reached) < 50 and reached == list(range(1, len(reached) + 1))
    reasons = [e["reason"] for e in sorted(sb.events("pause"), key=lambda e: e.get("lastTimestamp") or "")]
    assert "Suspending" in reasons and "SuspendedByUser" in reasons
    sb.patch("pause", {"spec": {"runPolicy": {"suspend": False}}})
    done = sb.wait("pause", timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["progress"]["step"] == 50
    assert steps_written(sb, "pause") == list(range(1, 51))    # resumed, not restarted: each step once
    assert "Resumed" in {e["reason"] for e in sb.events("pause")}
    # the feed: one time-ordered stream of the job's events and the trainer's milestones, for scripts as JSON
    _register()
    printed = CliRunner().invoke(app, ["events", "pause", "-o", "json", "--kubeconfig", str(sb.kubeconfig)])
    assert printed.exit_code == 0, printed.output
    entries = [json.loads(line) for line in printed.output.splitlines()]
    reasons = [e["reason"] for e in entries]
    assert {"JobCreated", "Suspending", "SuspendedByUser", "Resumed", "TrainingProgress",
            "TrainingSucceeded"} <= set(reasons), reasons
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)
    assert reasons.index("Suspending") < reasons.index("Resumed") < reasons.index("TrainingSucceeded")


def test_cancel_stops_for_good_and_keeps_what_was_written(sb: LocalCluster) -> None:
    sb.apply(aj("stopme", steps=200, step_ms=100, checkpoints={"volume": "ckpt"}))
    sb.wait_for(lambda: step_of(sb, "stopme") >= 2, timeout=30)
    sb.patch("stopme", {"spec": {"runPolicy": {"cancel": True}}})
    done = sb.wait("stopme", timeout=30)
    status = done["status"]
    assert status["phase"] == "Cancelled" and status.get("completionTime"), status
    assert conditions(done)["Cancelled"]["reason"] == "CancelledByUser"
    assert live_pods(sb, "stopme") == []
    assert status["artifacts"]["checkpoints"] == ["pvc://ckpt/stopme/checkpoints"]
    (checkpoint,) = sb.workdir.glob("**/volumes/*/ckpt/stopme/fake-checkpoint.json")
    assert json.loads(checkpoint.read_text())["step"] == len(steps_written(sb, "stopme")) >= 2
    assert sb.get("stopme") is not None          # the object stays: cancel is not delete


def test_an_operator_killed_mid_pause_and_mid_resume_loses_and_duplicates_nothing(sb: LocalCluster) -> None:
    sb.apply(aj("crash", steps=60, step_ms=150, checkpoints={"volume": "ckpt"}))
    sb.wait_for(lambda: step_of(sb, "crash") >= 2, timeout=30)
    first = sb.get("crash-trainer", kind="Job")["metadata"]["uid"]
    sb.kill_operator()                           # the request lands while no operator runs
    sb.patch("crash", {"spec": {"runPolicy": {"suspend": True}}})
    sb.restart_operator()
    sb.wait("crash", until=["Suspended"], timeout=30)
    assert live_pods(sb, "crash") == [] and len(steps_written(sb, "crash")) < 60
    sb.patch("crash", {"spec": {"runPolicy": {"suspend": False}}})
    sb.restart_operator()                        # kill -9 right after the resume request
    done = sb.wait("crash", timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sb.get("crash-trainer", kind="Job")["metadata"]["uid"] == first   # suspended, never re-created
    assert steps_written(sb, "crash") == list(range(1, 61))
    reasons = [e["reason"] for e in sb.events("crash")]
    assert reasons.count("JobCreated") == 1 and "Resumed" in reasons, reasons   # one creation, one event


def test_warnings_of_runs_that_ended_while_no_operator_ran_give_one_event_each(sb: LocalCluster) -> None:
    # "seen": a scrape saw the warning before the crash; "unseen": the run reports it only at its end. Both runs end
    # while no operator runs; the restarted one reads their termination messages: the condition, one event each.
    warned = {"fake.align.dev/warning": "NoLearningSignal"}
    seen, unseen = aj("seen", steps=30, step_ms=100), aj("unseen", steps=30, step_ms=100)
    seen["metadata"]["labels"].update(warned)
    unseen["metadata"]["labels"].update({**warned, "fake.align.dev/warning-at": "end"})
    sb.apply(seen)
    sb.apply(unseen)
    sb.wait_for(lambda: "LearningSignal" in conditions({"status": {}, **(sb.get("seen") or {})}), timeout=30)
    sb.wait_for(lambda: [e for e in sb.events("seen") if e["reason"] == "NoLearningSignal"], timeout=10)
    sb.kill_operator()
    sb.wait_for(lambda: all(p["status"].get("phase") == "Succeeded" for name in ("seen", "unseen")
                            for p in sb.list("Pod", labels=f"align.dev/job={name}")), timeout=30)
    assert (sb.get("unseen").get("status") or {}).get("phase") == "Running"  # the operator has not seen the end
    sb.start_operator()
    for name in ("seen", "unseen"):
        done = sb.wait(name, timeout=30)
        cond = conditions(done)["LearningSignal"]
        assert done["status"]["phase"] == "Succeeded" and cond["reason"] == "NoLearningSignal", done["status"]
        sb.wait_for(lambda: [e for e in sb.events(name) if e["reason"] == "NoLearningSignal"], timeout=10)
    sb.restart_operator()  # and once more, after the end: the finished jobs get nothing new
    time.sleep(3.0)        # the passes (status_interval_seconds) a second event would come from
    for name in ("seen", "unseen"):
        assert [e["reason"] for e in sb.events(name)].count("NoLearningSignal") == 1, sb.events(name)


def test_a_budget_pauses_a_running_job_warns_first_and_raising_it_resumes(sb: LocalCluster) -> None:
    # A CPU job: maxGpuHours counts pod-hours. The limit that pauses it is set once the pod has written its first
    # step, to what the job has used by then plus 0.0012 pod-hours (4.3 s more of running): a fixed limit from the
    # start raced the pod's start-up, and on a loaded machine paused the job before it had written a step.
    sb.apply(aj("budget", steps=60, step_ms=200, checkpoints={"volume": "ckpt"}, runPolicy={"maxGpuHours": 1}))
    sb.wait_for(lambda: step_of(sb, "budget") >= 1 and bool(steps_written(sb, "budget", missing_ok=True)), timeout=60)
    before = sb.get("budget")["status"]["usage"]
    assert before["budgetUsed"] < 0.8 and not before.get("warned"), before
    limit = round(before["podHours"] + 0.0012, 4)
    sb.patch("budget", {"spec": {"runPolicy": {"maxGpuHours": limit}}})
    paused = sb.wait("budget", until=["Suspended", "Succeeded", "Failed"], timeout=60)
    status = paused["status"]
    assert status["phase"] == "Suspended", status
    cond = conditions(paused)["Suspended"]
    assert cond["reason"] == "BudgetExhausted" and "runPolicy.maxGpuHours" in cond["message"]
    assert status["usage"]["podHours"] >= limit and status["usage"]["budgetUsed"] >= 1
    assert live_pods(sb, "budget") == []
    reached = steps_written(sb, "budget")
    assert 0 < len(reached) < 60 and reached == list(range(1, len(reached) + 1))
    events = sb.events("budget")
    warning = [e for e in events if e["reason"] == "BudgetWarning"]
    assert len(warning) == 1 and warning[0]["type"] == "Warning" and "80%" in warning[0]["message"]
    pausing = [i for i, e in enumerate(events) if e["reason"] == "Suspending" and "Budget used up" in e["message"]]
    assert pausing and events.index(warning[0]) < pausing[0], [e["reason"] for e in events]   # warned first
    sb.patch("budget", {"spec": {"runPolicy": {"maxGpuHours": 1}}})
    done = sb.wait("budget", timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert steps_written(sb, "budget") == list(range(1, 61))   # resumed from the pause: each step once
    usage = done["status"]["usage"]
    assert usage["running"] == [] and usage["podHours"] > status["usage"]["podHours"]


def test_a_namespace_default_budget_pauses_a_job_without_its_own_and_says_where_it_came_from(sb: LocalCluster) -> None:
    ns = "team-b"     # the ConfigMap governs its namespace only: the other tests' jobs run in the default one
    sb.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "align-defaults", "namespace": ns},
              "data": {"maxGpuHours": "0.0012", "maxWallClockMinutes": "600"}})
    doc = aj("nsbudget", steps=40, step_ms=200, checkpoints={"volume": "ckpt"}, runPolicy={"maxWallClockMinutes": 900})
    doc["metadata"]["namespace"] = ns
    sb.apply(doc)
    paused = sb.wait("nsbudget", namespace=ns, until=["Suspended", "Succeeded", "Failed"], timeout=60)
    status = paused["status"]
    assert status["phase"] == "Suspended", status
    cond = conditions(paused)["Suspended"]
    assert cond["reason"] == "BudgetExhausted" and "ConfigMap/align-defaults maxGpuHours" in cond["message"], cond
    # the job's own looser wall-clock limit does not loosen the namespace's
    assert status["usage"]["limits"] == [
        {"name": "maxGpuHours", "value": 0.0012, "source": "ConfigMap/align-defaults"},
        {"name": "maxWallClockMinutes", "value": 600, "source": "ConfigMap/align-defaults"}]
    assert status["usage"]["podHours"] >= 0.0012 and not [
        p for p in sb.list("Pod", namespace=ns, labels="align.dev/job=nsbudget")
        if p["status"].get("phase") not in ("Succeeded", "Failed")]
