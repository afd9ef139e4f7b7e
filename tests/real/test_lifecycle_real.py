"""Pause, resume and cancel on the real 1.20 control plane, which prunes Job.spec.suspend: the operator deletes the
Job (the real garbage collector takes its pods; the trainer checkpoints on SIGTERM) and re-creates it under the
same name on resume. The fake trainer keeps its steps on the checkpoint volume, so one history is checkable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.operator_plane import REPO, audit, wait_for
from tests.real.test_operator_real import SA_USER, Plane, denied, fake_job, plane  # noqa: F401 - the fixture

pytestmark = [pytest.mark.realk8s, pytest.mark.slow]


def resumable(name: str, steps: int) -> dict[str, Any]:
    doc = fake_job(name, steps=steps, step_ms=150)
    doc["spec"]["checkpoints"] = {"volume": "ckpt"}
    return doc


def steps_written(plane: Plane, ns: str, name: str) -> list[int]:
    path = plane.agents.workdir / "fake-node" / "volumes" / ns / "ckpt" / name / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def step_of(plane: Plane, ns: str, name: str) -> int:
    return int((((plane.aj(ns, name) or {}).get("status") or {}).get("progress") or {}).get("step") or 0)


def alignctl(plane: Plane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "alignctl"), *args],
                          env={**os.environ, "KUBECONFIG": str(plane.cluster.kubeconfig)}, capture_output=True,
                          text=True, timeout=60)


def sa_calls(plane: Plane, ns: str, verb: str, code: int) -> list[dict[str, Any]]:
    return [r for r in audit(plane.cluster, SA_USER) if r["verb"] == verb and (r.get("responseStatus") or {}).get(
        "code") == code and r["requestURI"].startswith(f"/apis/batch/v1/namespaces/{ns}/jobs")]


def test_pause_without_job_suspend_deletes_the_job_and_resume_recreates_it_to_the_same_final_step(plane: Plane) -> None:
    ns = plane.cluster.namespace("pause")
    plane.create(ns, resumable("pause", 100))
    wait_for(lambda: step_of(plane, ns, "pause") >= 3, 90, "progress while running")
    (first,) = plane.jobs(ns)
    assert "suspend" not in first["spec"]                       # 1.20 pruned it
    paused = alignctl(plane, "suspend", "pause", "-n", ns)
    assert paused.returncode == 0, paused.stderr
    plane.operator.stop(kill=True)                              # kill -9 in the middle of the transition
    plane.operator.start()
    status = plane.phase(ns, "pause", "Suspended", timeout=90)["status"]
    assert plane.jobs(ns) == [] and plane.pods(ns) == []        # nothing runs, nothing is claimed early
    assert {c["type"]: c for c in status["conditions"]}["Suspended"]["reason"] == "SuspendedByUser"
    reached = steps_written(plane, ns, "pause")
    assert 3 <= len(reached) < 100 and reached == list(range(1, len(reached) + 1))
    # the phase is written first and its event posted after it: wait for the event rather than race it
    wait_for(lambda: {"Suspending", "SuspendedByUser"} <= {e["reason"] for e in plane.events(ns, "pause")}, 30,
             "the Suspending and SuspendedByUser events")
    plane.operator.stop(kill=True)          # kill -9, then the resume request: the restart meets it pending
    resumed = alignctl(plane, "resume", "pause", "-n", ns)
    assert resumed.returncode == 0, resumed.stderr
    plane.operator.start()
    done = plane.phase(ns, "pause", "Succeeded", "Failed", timeout=120)["status"]
    assert done["phase"] == "Succeeded" and done["progress"]["step"] == 100, done
    (again,) = plane.jobs(ns)
    assert again["metadata"]["name"] == first["metadata"]["name"] and again["metadata"]["uid"] != first["metadata"]["uid"]
    assert steps_written(plane, ns, "pause") == list(range(1, 101))   # continued, each step once
    reasons = [e["reason"] for e in plane.events(ns, "pause")]
    assert "Resumed" in reasons and reasons.count("JobCreated") == 1, reasons   # one creation, one event
    assert len(sa_calls(plane, ns, "create", 201)) == 2 and len(sa_calls(plane, ns, "delete", 200) + sa_calls(plane, ns, "delete", 202)) == 1
    # this job's calls only: the audit log is the worker's whole control plane, where another module's test may
    # have left a namespace the operator is meant to be refused in (an order-dependent failure seen once)
    assert [d for d in denied(plane.cluster) if f"/namespaces/{ns}/" in d] == []


def test_cancel_without_job_suspend_ends_cancelled_and_keeps_the_checkpoint(plane: Plane) -> None:
    ns = plane.cluster.namespace("cancel")
    plane.create(ns, resumable("stopme", 400))
    wait_for(lambda: step_of(plane, ns, "stopme") >= 2, 90, "progress while running")
    patched = plane.cluster.kubectl("patch", "-n", ns, "aj/stopme", "--type=merge",
                                    "-p", '{"spec":{"runPolicy":{"cancel":true}}}')
    assert patched.returncode == 0
    status = plane.phase(ns, "stopme", "Cancelled", "Failed", "Succeeded", timeout=90)["status"]
    assert status["phase"] == "Cancelled", status
    assert plane.jobs(ns) == [] and plane.pods(ns) == [] and plane.aj(ns, "stopme") is not None
    checkpoint = plane.agents.workdir / "fake-node" / "volumes" / ns / "ckpt" / "stopme" / "fake-checkpoint.json"
    assert json.loads(checkpoint.read_text())["step"] == len(steps_written(plane, ns, "stopme")) >= 2


def test_a_budget_pauses_a_running_job_and_raising_it_resumes_it(plane: Plane) -> None:
    ns = plane.cluster.namespace("budget")
    doc = resumable("budget", 80)
    doc["spec"]["runPolicy"] = {"maxGpuHours": 1}
    plane.create(ns, doc)
    # A CPU job: maxGpuHours counts pod-hours. The limit that pauses it is set once the pod has written its first
    # step, to what the job has used by then plus 0.0015 pod-hours (5.4 s more of running): a fixed limit from
    # creation raced the pod's start-up (on a loaded machine the pause came before any step).
    wait_for(lambda: step_of(plane, ns, "budget") >= 1, 90, "a first step")
    before = plane.aj(ns, "budget")["status"]["usage"]
    assert before["budgetUsed"] < 0.8 and not before.get("warned"), before
    limit = round(before["podHours"] + 0.0015, 4)
    lowered = plane.cluster.kubectl("patch", "-n", ns, "aj/budget", "--type=merge", "-p",
                                    json.dumps({"spec": {"runPolicy": {"maxGpuHours": limit}}}))
    assert lowered.returncode == 0, lowered.stderr
    paused = plane.phase(ns, "budget", "Suspended", "Succeeded", "Failed", timeout=90)
    status = paused["status"]
    assert status["phase"] == "Suspended", status
    assert {c["type"]: c for c in status["conditions"]}["Suspended"]["reason"] == "BudgetExhausted"
    assert plane.jobs(ns) == [] and plane.pods(ns) == [] and status["usage"]["budgetUsed"] >= 1
    assert status["usage"]["podHours"] >= limit
    assert 0 < len(steps_written(plane, ns, "budget")) < 80
    assert "BudgetWarning" in {e["reason"] for e in plane.events(ns, "budget")}
    # kubectl alone (GitOps): raise the limit
    plane.cluster.kubectl("patch", "-n", ns, "aj/budget", "--type=merge", "-p",
                          '{"spec":{"runPolicy":{"maxGpuHours":1}}}')
    done = plane.phase(ns, "budget", "Succeeded", "Failed", timeout=120)["status"]
    assert done["phase"] == "Succeeded", done
    assert steps_written(plane, ns, "budget") == list(range(1, 81))
    assert done["usage"]["podHours"] > status["usage"]["podHours"]
    row = plane.cluster.kubectl("get", "-n", ns, "aj/budget", "--no-headers").stdout.split()
    assert row[1] == "Succeeded" and float(row[5]) == 0       # the GPU-h printer column (a CPU job: 0)


def test_the_real_trainer_paused_mid_run_resumes_its_own_run_to_the_planned_step(plane: Plane) -> None:
    """The product's trainer, not the fake: SIGTERM writes a checkpoint, the re-created Job's pod claims the same
    run (the AlignmentJob's uid), resumes from it and appends to the same metrics.jsonl."""
    ns = plane.cluster.namespace("realpause")
    doc = yaml.safe_load((REPO / "examples" / "sft.yaml").read_text())
    doc["metadata"]["name"] = "sft-pause"
    doc["spec"]["hyperparameters"].update(maxSteps=120, batchSize=2, loggingSteps=1)
    doc["spec"]["checkpoints"] = {"everySteps": 1000, "keep": 2, "volume": "ckpt"}   # only the SIGTERM one
    doc["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    plane.create(ns, doc)
    wait_for(lambda: step_of(plane, ns, "sft-pause") >= 3, 300, "the trainer's progress")
    plane.cluster.kubectl("patch", "-n", ns, "aj/sft-pause", "--type=merge", "-p",
                          '{"spec":{"runPolicy":{"suspend":true}}}')
    plane.phase(ns, "sft-pause", "Suspended", timeout=120)
    assert plane.jobs(ns) == [] and plane.pods(ns) == []
    workdir = plane.agents.workdir / "real-node" / "volumes" / ns / "ckpt" / "sft-pause"
    saved = sorted(int(p.name.split("-")[1]) for p in (workdir / "checkpoints").glob("checkpoint-*"))
    assert saved and 0 < saved[-1] < 120, saved                     # the SIGTERM checkpoint
    identity = json.loads((workdir / "run.json").read_text())
    plane.cluster.kubectl("patch", "-n", ns, "aj/sft-pause", "--type=merge", "-p",
                          '{"spec":{"runPolicy":{"suspend":false}}}')
    done = plane.phase(ns, "sft-pause", "Succeeded", "Failed", timeout=400)["status"]
    assert done["phase"] == "Succeeded" and done["progress"]["step"] == done["progress"]["totalSteps"] == 120, done
    assert json.loads((workdir / "run.json").read_text()) == identity   # the same run, not a fresh one
    assert not (workdir / "superseded").exists()
    steps = [r["step"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 120 and saved[-1] in steps, steps   # one history
    assert (workdir / "final" / "adapter_config.json").is_file()
    # the SIGTERM checkpoint, listed with its step's metrics and where it is (from the resumed pod's /metrics and
    # the success message)
    listed = {c["step"]: c for c in done["checkpoints"]}
    assert set(saved) <= set(listed) and "loss" in listed[saved[-1]]["metrics"], done["checkpoints"]
    assert listed[saved[-1]]["uri"] == f"pvc://ckpt/sft-pause/checkpoints/checkpoint-{saved[-1]}"
    assert f"checkpoint at step {saved[-1]}" in " ".join(
        e["message"] for e in plane.events(ns, "sft-pause") if e["reason"] == "CheckpointSaved")
    # another job starts from that checkpoint (job://name@step)
    second = yaml.safe_load((REPO / "examples" / "sft.yaml").read_text())
    second["metadata"]["name"] = "sft-from-checkpoint"
    second["spec"]["model"]["adapter"]["init"] = f"job://sft-pause@{saved[-1]}"
    second["spec"]["hyperparameters"].update(maxSteps=2, batchSize=2)
    second["spec"]["checkpoints"] = {"volume": "ckpt"}
    second["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    plane.create(ns, second)
    follow = plane.phase(ns, "sft-from-checkpoint", "Succeeded", "Failed", timeout=300)["status"]
    assert follow["phase"] == "Succeeded", follow
    assert follow["resolvedUris"] == {f"job://sft-pause@{saved[-1]}": listed[saved[-1]]["uri"]}
    pod_log = next((plane.agents.workdir / "real-node" / "pods" / ns).glob("sft-from-checkpoint-*/log.txt"))
    assert f"policy adapter initialised from job://sft-pause@{saved[-1]}" in pod_log.read_text()


def promote_jobs(plane: Plane, ns: str) -> list[str]:
    return [j["metadata"]["name"] for j in plane.jobs(ns)
            if (j["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "promote"]


def test_promote_on_the_real_plane_publishes_the_step_once_across_a_kill_and_a_second_job_starts_from_it(
        plane: Plane) -> None:
    """GitOps: spec.promote in the manifest from the start. The real Job controller runs the operator's promote Job
    (the product's trainer, `python -m align_trainer.promote`) on the checkpoint volume once training has ended."""
    ns = plane.cluster.namespace("promote")
    doc = yaml.safe_load((REPO / "examples" / "sft.yaml").read_text())
    doc["metadata"]["name"] = "sft-promote"
    doc["spec"]["hyperparameters"].update(maxSteps=12, batchSize=2, loggingSteps=1)
    doc["spec"]["checkpoints"] = {"everySteps": 4, "keep": 1, "volume": "ckpt"}   # keep 1 would rotate 4 away
    doc["spec"]["promote"] = {"step": 4}
    doc["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    plane.create(ns, doc)
    done = plane.phase(ns, "sft-promote", "Succeeded", "Failed", timeout=400)["status"]
    assert done["phase"] == "Succeeded", done
    wait_for(lambda: promote_jobs(plane, ns), 60, "the promote Job")
    plane.operator.stop(kill=True)                              # kill -9 mid-promotion
    plane.operator.start()
    promoted = wait_for(lambda: (j := plane.aj(ns, "sft-promote")) and {c["type"]: c for c in j["status"].get(
        "conditions", [])}.get("Promoted", {}).get("status") == "True" and j, 300,
        f"Promoted=True (operator log tail: {plane.operator.text()[-1500:]})")["status"]
    assert promoted["promotion"]["step"] == 4
    assert promoted["promotion"]["source"] == "pvc://ckpt/sft-promote/checkpoints/checkpoint-4"
    assert promoted["artifacts"]["adapter"] == promoted["promotion"]["adapter"]
    assert promote_jobs(plane, ns) == ["sft-promote-promote-4-1"]   # one, across the restart
    workdir = plane.agents.workdir / "real-node" / "volumes" / ns / "ckpt" / "sft-promote"
    assert sorted(int(p.name.split("-")[1]) for p in (workdir / "checkpoints").glob("checkpoint-*")) == [4, 12]
    card = (workdir / "final" / "README.md").read_text()
    assert "for 4 optimizer steps" in card and "Promoted checkpoint: step 4" in card
    assert (workdir / "final" / "adapter_model.safetensors").read_bytes() != b""
    wait_for(lambda: "Promoted" in {e["reason"] for e in plane.events(ns, "sft-promote")}, 30, "the Promoted event")
    # a step the ended job does not keep: kubectl alone is refused by the condition, naming the kept steps
    plane.cluster.kubectl("patch", "-n", ns, "aj/sft-promote", "--type=merge", "-p", '{"spec":{"promote":{"step":6}}}')
    refused = wait_for(lambda: (j := plane.aj(ns, "sft-promote")) and {c["type"]: c for c in j["status"][
        "conditions"]}["Promoted"]["reason"] == "PromoteStepNotFound" and j, 60, "PromoteStepNotFound")["status"]
    assert "kept: 4, 12" in {c["type"]: c for c in refused["conditions"]}["Promoted"]["message"]
    assert (workdir / "final" / "README.md").read_text() == card
    plane.cluster.kubectl("patch", "-n", ns, "aj/sft-promote", "--type=merge", "-p", '{"spec":{"promote":{"step":4}}}')
    # a second job starts from the promoted adapter (job://name)
    second = yaml.safe_load((REPO / "examples" / "sft.yaml").read_text())
    second["metadata"]["name"] = "sft-after-promote"
    second["spec"]["model"]["adapter"]["init"] = "job://sft-promote"
    second["spec"]["hyperparameters"].update(maxSteps=2, batchSize=2)
    second["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    plane.create(ns, second)
    follow = plane.phase(ns, "sft-after-promote", "Succeeded", "Failed", timeout=300)["status"]
    assert follow["phase"] == "Succeeded", follow
    assert follow["resolvedUris"] == {"job://sft-promote": promoted["promotion"]["adapter"]}
    pod_log = next((plane.agents.workdir / "real-node" / "pods" / ns).glob("sft-after-promote-*/log.txt"))
    assert "policy adapter initialised from job://sft-promote" in pod_log.read_text()
    assert [d for d in denied(plane.cluster) if f"/namespaces/{ns}/" in d] == []
