"""The operator image, built here from operator/Dockerfile, starts as the chart runs it (its own entrypoint and
command, the chart's UID, a read-only root) and reconciles an AlignmentJob into its Job, then follows the Job
(its pod run by the emulator's node agent as a local process) to the AlignmentJob's end state: Succeeded."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from align_localcluster import LocalCluster
from align_localcluster.containers import podman_env
from tests.containers.conftest import OPERATOR_IMAGE

pytestmark = [pytest.mark.containers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "align-operator"


def _chart_operator_user() -> str:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    line = next(line for line in deployment.splitlines() if "runAsUser:" in line)
    return line.split(":", 1)[1].strip()


def test_operator_image_reconciles_a_job(operator_image: str, tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    for split in ("train", "eval"):  # absolute: the pod runs in another directory
        doc["spec"]["data"][split]["uri"] = str(REPO / "examples" / doc["spec"]["data"][split]["uri"])
    doc["spec"]["hyperparameters"].update(maxSteps=4, epochs=1)
    doc["spec"].pop("evaluation", None)
    with LocalCluster(workdir=tmp_path / "sb", operator="none", cwd=tmp_path) as sb:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(sb.kubeconfig.read_text())
        kubeconfig.chmod(0o644)
        name = f"align-operator-test-{sb.url.rsplit(':', 1)[1]}"
        uid = _chart_operator_user()
        # No args: the image's own ENTRYPOINT + CMD (kopf run --standalone --all-namespaces --module=...), as the
        # chart's Deployment runs it; settings through the environment as the chart sets them.
        argv = ["podman", "run", "--rm", "--name", name, "--network", "host", "--pull", "never", "--read-only",
                "--user", f"{uid}:{uid}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--tmpfs", "/tmp", "--volume", f"{kubeconfig}:/etc/kube/config:ro",
                "--env", "KUBECONFIG=/etc/kube/config", "--env", "ALIGN_OPERATOR_METRICS_PORT=0",
                "--env", "ALIGN_OPERATOR_TRAINER_IMAGE=localhost/align-trainer:dev",
                operator_image]
        log = (tmp_path / "operator.log").open("wb")
        proc = subprocess.Popen(argv, env=podman_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            sb.apply(doc)
            deadline = time.monotonic() + 180
            job = None
            while time.monotonic() < deadline and job is None and proc.poll() is None:
                job = sb.get("dpo-tiny-trainer", kind="Job")
                time.sleep(1)
            out = (tmp_path / "operator.log").read_text(errors="replace")[-3000:]
            assert job is not None, f"the operator container made no Job\n{out}"
            container = job["spec"]["template"]["spec"]["containers"][0]
            assert container["image"] == "localhost/align-trainer:dev"
            assert sb.get("dpo-tiny-config", kind="ConfigMap") is not None
            # the end state, as the operator in the image wrote it from the Job's and the trainer's
            aj = sb.wait("dpo-tiny", timeout=600)
            status = aj["status"]
            out = (tmp_path / "operator.log").read_text(errors="replace")[-3000:]
            assert status["phase"] == "Succeeded", (status, out)
            conditions = {c["type"]: c for c in status["conditions"]}
            assert conditions["Succeeded"]["status"] == "True" and conditions["Succeeded"]["reason"] == "TrainingSucceeded", \
                conditions
            assert status["progress"]["step"] == 4 and status.get("completionTime"), status
        finally:
            subprocess.run(["podman", "stop", "-t", "5", name], env=podman_env(), capture_output=True)
            proc.wait(timeout=60)
