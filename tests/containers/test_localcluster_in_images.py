"""The local cluster's node agent runs pods as containers of the trainer image (LocalCluster(container_image=...)): the
operator renders the Job, the agent runs its pod with podman exactly as rendered, and the job reaches Succeeded
with its artifacts, so the local cluster exercises the image the chart deploys, not this virtualenv."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from align_localcluster import LocalCluster
from tests.containers.conftest import TRAINER_IMAGE

pytestmark = [pytest.mark.containers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_the_local_cluster_runs_the_pod_in_the_trainer_image(trainer_image: str, tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    doc["metadata"]["name"] = "dpo-in-container"
    for split in ("train", "eval"):  # absolute, as alignctl local run makes them
        doc["spec"]["data"][split]["uri"] = str(REPO / "examples" / doc["spec"]["data"][split]["uri"])
    doc["spec"]["hyperparameters"].update(maxSteps=4, epochs=1)
    doc["spec"].pop("evaluation")
    with LocalCluster(workdir=tmp_path / "sb", container_image=trainer_image, cwd=tmp_path) as sb:
        sb.apply(doc)
        job = sb.wait("dpo-in-container", timeout=900)
        pods = sb.list(kind="Pod")
        logs = "\n".join(sb.logs(p["metadata"]["name"]) for p in pods)[-3000:]
        assert job["status"]["phase"] == "Succeeded", (job["status"], logs)
        assert job["status"]["progress"]["step"] == 4
    # It ran in the image, as the pod says: a local process would have written these as root.
    adapters = list((tmp_path / "sb" / "pods").rglob("adapter_model.safetensors"))
    assert adapters and all(p.stat().st_uid == 1000 for p in adapters), adapters
