"""The operator end to end on the real core server (kube-apiserver + kube-controller-manager 1.20): the chart's
ServiceAccount and ClusterRole only (a token the real server issued), the real Job controller and garbage
collector, and our node agent binding and running the pods. Runs in file order (`--dist loadfile`); the last test
deletes the CRD; the module leaves the shared control plane as it found it (no CRD, no RBAC of ours).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from align_api import crd
from align_api.constants import GROUP, PLURAL, VERSION
from tests.real.operator_plane import (FAKE_TRAINER, OPERATOR_NS, REPO, Agents, OperatorProcess, apply, audit, delete,
                                       rbac_documents, service_account_kubeconfig, wait_for)
from tests.realk8s import RealCluster

pytestmark = [pytest.mark.realk8s, pytest.mark.slow]

SA_USER = f"system:serviceaccount:{OPERATOR_NS}:align-operator"
AJ_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class Plane:
    def __init__(self, cluster: RealCluster, agents: Agents, operator: OperatorProcess):
        self.cluster, self.agents, self.operator = cluster, agents, operator

    def aj(self, ns: str, name: str) -> dict[str, Any] | None:
        r = self.cluster.api("GET", f"{AJ_PATH.format(ns=ns)}/{name}")
        return r.json() if r.status_code == 200 else None

    def create(self, ns: str, doc: dict[str, Any]) -> None:
        r = self.cluster.api("POST", AJ_PATH.format(ns=ns), doc)
        assert r.status_code == 201, r.text

    def jobs(self, ns: str) -> list[dict[str, Any]]:
        return self.cluster.api("GET", f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]

    def pods(self, ns: str) -> list[dict[str, Any]]:
        return self.cluster.api("GET", f"/api/v1/namespaces/{ns}/pods").json()["items"]

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        items = self.cluster.api("GET", f"/api/v1/namespaces/{ns}/events").json()["items"]
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    def phase(self, ns: str, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (j := self.aj(ns, name)) and (j.get("status") or {}).get("phase") in phases and j,
                        timeout, f"{ns}/{name} in {phases} (operator log tail: {self.operator.text()[-1500:]})")


def fake_job(name: str, *, steps: int, step_ms: int) -> dict[str, Any]:
    """A job for the `fake` node: the fake trainer counts `steps` steps of `step_ms` and writes an adapter."""
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": name, "labels": {"fake.align.dev/steps": str(steps),
                                                  "fake.align.dev/step-ms": str(step_ms)}},
            "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "data/sft.jsonl"}},
                     "resources": {"gpusPerNode": 0, "nodeSelector": {"align.dev/trainer": "fake"}}}}


def denied(cluster: RealCluster) -> list[str]:
    return [f"{r['verb']} {r['requestURI']}: {r['responseStatus'].get('message', '')}"
            for r in audit(cluster, SA_USER) if (r.get("responseStatus") or {}).get("code") == 403]


@pytest.fixture(scope="module")
def plane(realk8s: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    work = tmp_path_factory.mktemp("operator-real")
    realk8s.install_crd()
    installed = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}}, *rbac_documents()]
    apply(realk8s, installed)
    kubeconfig = service_account_kubeconfig(realk8s, work / "operator-kubeconfig")
    agents = Agents(realk8s, work)
    agents.start("real-node", trainer="real")
    agents.start("fake-node", trainer="fake", command=FAKE_TRAINER)
    operator = OperatorProcess(kubeconfig, work / "operator.log")
    operator.start()
    try:
        yield Plane(realk8s, agents, operator)
    finally:
        operator.stop()
        agents.stop()
        delete(realk8s, [*installed[1:], *({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
                                           for name in ("real-node", "fake-node"))])
        realk8s.api("DELETE", f"{CRD_PATH}/{crd.CRD_NAME}")   # leave the shared control plane as found


def test_dpo_on_tiny_succeeds_with_the_charts_rbac_and_logs_come_through_the_api_server(plane: Plane) -> None:
    cluster, ns = plane.cluster, plane.cluster.namespace("dpo")
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    doc["spec"].pop("evaluation")                 # a two-step model cannot pass the win-rate gate
    doc["spec"]["data"].pop("eval")
    doc["spec"]["hyperparameters"]["maxSteps"] = 2
    doc["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    # kubectl wait on the condition the operator writes (kubectl 1.37 against the 1.20 server).
    waited = cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "aj/dpo-tiny", "--timeout=300s",
                             check=False, timeout=320)
    job = plane.aj(ns, "dpo-tiny")
    assert waited.returncode == 0, f"{waited.stderr}\n{job and job.get('status')}\n{plane.operator.text()[-2000:]}"
    status = job["status"]
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 2 and status["progress"]["percent"] == 100
    assert "loss" in status["metrics"] and "rewards_margins" in status["metrics"]  # one spelling: the gauge name
    adapter = status["artifacts"]["adapter"].removeprefix("file://")   # the pod's volume, on this machine
    assert Path(adapter, "adapter_config.json").is_file(), status
    assert not status.get("lastError"), status
    assert not job["metadata"].get("finalizers"), job["metadata"]   # nothing holds a deletion for the operator
    # 1.20 prunes what it does not know; the job still ran, and a Warning event says what was lost.
    dropped = [e["message"] for e in plane.events(ns, "dpo-tiny") if e["reason"] == "JobFieldsDropped"]
    assert len(dropped) == 1 and "completionMode, podFailurePolicy" in dropped[0], dropped
    assert "completionMode" not in plane.jobs(ns)[0]["spec"]
    # The real Job controller made exactly one pod; our node bound it and reported its exit.
    (pod,) = plane.pods(ns)
    assert pod["spec"]["nodeName"] == "real-node"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    # Logs through the API server: it dials the node's log endpoint (kubectl logs, alignctl logs).
    logs = cluster.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout
    assert logs.strip() and logs == (plane.agents.workdir / "real-node" / "pods" / ns / pod["metadata"]["name"]
                                     / "log.txt").read_text()
    ours = subprocess.run([str(Path(sys.executable).parent / "alignctl"), "logs", "dpo-tiny", "-n", ns],
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, capture_output=True, text=True,
                          timeout=60)
    assert ours.returncode == 0 and logs.strip().splitlines()[-1] in ours.stdout, ours.stderr
    # Deleting the AlignmentJob garbage-collects its Job and pods through the real garbage collector.
    cluster.kubectl("delete", "-n", ns, "aj/dpo-tiny", "--wait=true", timeout=60)
    wait_for(lambda: not plane.jobs(ns) and not plane.pods(ns), 60, "Job and pod garbage-collected")
    assert denied(cluster) == []


def test_a_grader_without_variance_is_a_learning_signal_condition_and_one_event(plane: Plane) -> None:
    """Issue 22 item 8 through the real server: GRPO on builtin://tiny, whose random bytes never equal the
    reference, so string_check gives every sample of every group 0. The trainer's warning gauge, scraped by the
    operator while the pod runs, becomes LearningSignal=False and one NoLearningSignal Warning event; the run goes on."""
    cluster, ns = plane.cluster, plane.cluster.namespace("nosignal")
    doc = yaml.safe_load((REPO / "examples" / "grpo.yaml").read_text())
    doc["metadata"]["name"] = "flat"
    doc["spec"]["grader"] = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                             "reference": "{{item.answer}}", "operation": "eq"}
    # warned after 2 grading batches; the other steps keep the pod (and its /metrics) up for scrapes after that
    doc["spec"]["hyperparameters"].update(maxSteps=30, batchSize=8, numGenerations=4)
    doc["spec"]["runPolicy"] = {"noLearningSignalSteps": 2}
    doc["spec"]["evaluation"] = {"enabled": False}
    doc["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    job = plane.phase(ns, "flat", "Succeeded", "Failed", timeout=300)
    status = job["status"]
    assert status["phase"] == "Succeeded", (status, plane.operator.text()[-2000:])  # a warning: the run goes on
    cond = {c["type"]: c for c in status["conditions"]}.get("LearningSignal")
    assert cond and cond["status"] == "False" and cond["reason"] == "NoLearningSignal", status
    # the sampled answers beside the rendered reference they were compared with
    assert "grader 'exact' gave every prompt's samples the same reward" in cond["message"], cond
    assert " vs 'a " in cond["message"] and "-> 0" in cond["message"], cond
    events = wait_for(lambda: [e for e in plane.events(ns, "flat") if e["reason"] == "NoLearningSignal"], 30,
                      "a NoLearningSignal event")
    assert len(events) == 1 and events[0]["type"] == "Warning", events
    assert events[0]["message"] == cond["message"][:1024], (events[0]["message"], cond["message"])
    assert "warning" not in status["metrics"]
    cluster.kubectl("delete", "-n", ns, "aj/flat", "--wait=true", timeout=60)
    assert denied(cluster) == []


def test_a_warning_of_a_run_that_ended_before_any_scrape_is_a_condition_and_one_event(plane: Plane) -> None:
    """The short-run case through the real server: the fake trainer reports NoLearningSignal only in its success
    termination message (never on /metrics, as a run that warned at its last step and ended before the operator's
    next scrape); the operator reads it from the pod status the node agent wrote: LearningSignal=False and one
    Warning event, written through the status subresource and the events API with the chart's RBAC."""
    ns = plane.cluster.namespace("endwarn")
    doc = fake_job("short", steps=2, step_ms=50)
    doc["metadata"]["labels"].update({"fake.align.dev/warning": "NoLearningSignal", "fake.align.dev/warning-at": "end"})
    plane.create(ns, doc)
    status = plane.phase(ns, "short", "Succeeded", "Failed")["status"]
    assert status["phase"] == "Succeeded", status
    cond = {c["type"]: c for c in status["conditions"]}.get("LearningSignal")
    assert cond and cond["status"] == "False" and cond["reason"] == "NoLearningSignal", status
    assert "'A: bowling' vs 'A'" in cond["message"], cond
    events = wait_for(lambda: [e for e in plane.events(ns, "short") if e["reason"] == "NoLearningSignal"], 30,
                      "a NoLearningSignal event")
    time.sleep(2.0)  # the operator's next passes (status interval 1 s) would post a second one
    events = [e for e in plane.events(ns, "short") if e["reason"] == "NoLearningSignal"]
    assert len(events) == 1 and events[0]["type"] == "Warning" and events[0]["message"] == cond["message"], events
    assert denied(plane.cluster) == []


def test_the_real_model_example_runs_through_the_real_control_plane(plane: Plane) -> None:
    """examples/dpo-smollm2.yaml (SmolLM2 from its GGUF file, dequantized in the pod) through the real Job
    controller: shortened to 2 steps and without its gate (the sandbox e2e runs it unchanged and checks learning)."""
    cluster, ns = plane.cluster, plane.cluster.namespace("smollm2")
    doc = yaml.safe_load((REPO / "examples" / "dpo-smollm2.yaml").read_text())
    doc["spec"]["hyperparameters"]["maxSteps"] = 2
    doc["spec"]["evaluation"].pop("gates")
    doc["spec"]["resources"]["nodeSelector"] = {"align.dev/trainer": "real"}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    job = plane.phase(ns, "dpo-smollm2", "Succeeded", "Failed", timeout=900)
    status = job["status"]
    assert status["phase"] == "Succeeded", (status, plane.operator.text()[-2000:])
    assert {c["type"]: c["reason"] for c in status["conditions"]}.get("Evaluated") == "EvaluationPassed", status
    adapter = Path(status["artifacts"]["adapter"].removeprefix("file://"))
    assert "GGUF source: `SmolLM2-135M-Instruct.Q4_1.gguf`" in (adapter / "README.md").read_text()
    assert (adapter.parent / "report.md").is_file()
    cluster.kubectl("delete", "-n", ns, "aj/dpo-smollm2", "--wait=true", timeout=60)
    assert denied(cluster) == []


def test_an_operator_restart_mid_run_creates_no_second_job(plane: Plane) -> None:
    ns = plane.cluster.namespace("restart")
    plane.create(ns, fake_job("restart", steps=40, step_ms=150))
    wait_for(lambda: ((plane.aj(ns, "restart") or {}).get("status") or {}).get("progress", {}).get("step"), 60,
             "progress while running")
    (first,) = plane.jobs(ns)
    plane.operator.stop(kill=True)   # a crash: no cleanup of any kind
    plane.operator.start()
    done = plane.phase(ns, "restart", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    (job,) = plane.jobs(ns)
    assert job["metadata"]["uid"] == first["metadata"]["uid"]
    created = [r for r in audit(plane.cluster, SA_USER) if r["verb"] == "create"
               and r["requestURI"].startswith(f"/apis/batch/v1/namespaces/{ns}/jobs")
               and r["responseStatus"]["code"] == 201]
    assert len(created) == 1, created
    assert len(plane.pods(ns)) == 1
    assert denied(plane.cluster) == []


def test_a_denied_verb_is_an_event_and_a_condition_and_the_job_recovers_once_granted(plane: Plane) -> None:
    cluster, ns = plane.cluster, plane.cluster.namespace("rbac")

    def without_job_create(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(r, verbs=[v for v in r["verbs"] if v != "create"]) if "jobs" in r["resources"] else r
                for r in rules]
    apply(cluster, rbac_documents(without_job_create))
    try:
        plane.create(ns, fake_job("denied", steps=2, step_ms=50))

        def forbidden() -> dict[str, Any] | None:
            job = plane.aj(ns, "denied") or {}
            cond = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []}.get("Created")
            return cond if cond and cond["status"] == "False" and cond["reason"] == "Forbidden" else None
        cond = wait_for(forbidden, 60, "Created=False/Forbidden")
        assert 'cannot create resource "jobs"' in cond["message"] and SA_USER in cond["message"], cond
        status = plane.aj(ns, "denied")["status"]
        assert status["lastError"]["reason"] == "Forbidden" and status["phase"] == "Pending", status
        warning = wait_for(lambda: [e for e in plane.events(ns, "denied") if e["reason"] == "Forbidden"], 30,
                           "a Forbidden event")
        assert warning[0]["type"] == "Warning" and "jobs" in warning[0]["message"]
        assert plane.operator.process is not None and plane.operator.process.poll() is None  # no crash
        assert any("jobs" in d for d in denied(cluster))
    finally:
        apply(cluster, rbac_documents())  # the chart's rules again: the next attempt creates the Job
    done = plane.phase(ns, "denied", "Succeeded", "Failed", timeout=90)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    cond = {c["type"]: c for c in done["status"]["conditions"]}["Created"]
    assert cond["status"] == "True" and not done["status"].get("lastError"), done["status"]


def test_deleting_never_waits_for_the_operator(plane: Plane) -> None:
    cluster, ns = plane.cluster, plane.cluster.namespace("delete")
    # An object an older operator marked with its finalizer: a running operator now removes it.
    legacy = fake_job("legacy", steps=2, step_ms=50)
    legacy["metadata"]["finalizers"] = ["align.dev/finalizer"]
    plane.create(ns, legacy)
    wait_for(lambda: not (plane.aj(ns, "legacy") or {"metadata": {"finalizers": [1]}})["metadata"].get("finalizers"),
             60, "the old finalizer removed")
    plane.create(ns, fake_job("live", steps=400, step_ms=200))
    plane.phase(ns, "live", "Running")                     # its status daemon runs
    assert not plane.aj(ns, "live")["metadata"].get("finalizers")
    plane.operator.stop()
    # The operator is down: the AlignmentJob goes at once, and its Job and pod after it.
    assert cluster.api("DELETE", f"{AJ_PATH.format(ns=ns)}/live").status_code == 200
    wait_for(lambda: plane.aj(ns, "live") is None, 10, "the AlignmentJob deleted without the operator")
    wait_for(lambda: not [j for j in plane.jobs(ns) if j["metadata"]["name"] == "live-trainer"], 60, "Job collected")
    # Its running pod: the real server deletes it gracefully, and the node agent stops it and removes it.
    wait_for(lambda: not [p for p in plane.pods(ns) if p["metadata"]["name"].startswith("live-")], 60,
             "the running pod stopped and deleted")
    # As after `helm uninstall`: the CRD goes with every AlignmentJob still in it.
    plane.create(ns, fake_job("left-behind", steps=400, step_ms=200))
    r = cluster.kubectl("delete", "crd", crd.CRD_NAME, "--timeout=60s", check=False, timeout=90)
    assert r.returncode == 0, r.stderr
    assert cluster.api("GET", f"{CRD_PATH}/{crd.CRD_NAME}").status_code == 404
