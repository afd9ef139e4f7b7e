"""End to end: `resources.nodes: 2` in the local cluster runs two pods (two trainer processes) that rendezvous
through the headless Service name `<job>-trainer-0.<job>-trainer`, as on a cluster, and the job Succeeds with
one set of artifacts (rank 0's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def test_two_nodes_rendezvous_through_the_service_name_and_succeed(tmp_path: Path) -> None:
    manifest = {
        "apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "two-nodes"},
        "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny", "adapter": {"r": 4, "alpha": 8}},
                 "data": {"train": {"uri": str(REPO / "examples" / "data" / "sft.openai.jsonl")}},
                 "hyperparameters": {"batchSize": 2, "maxSteps": 2, "loggingSteps": 1, "maxLength": 64},
                 "resources": {"nodes": 2, "gpusPerNode": 0, "collectiveTimeoutSeconds": 120},
                 "evaluation": {"enabled": False}}}
    path = tmp_path / "two-nodes.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    workdir = tmp_path / "local"
    result = subprocess.run(
        [sys.executable, "-c", "from align_operator.cli import main; main()", "local", "run", str(path), "-o", "json",
         "--quiet", "--workdir", str(workdir), "--timeout", "400"],
        capture_output=True, text=True, timeout=460, cwd=tmp_path, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    logs = {p.parent.name: p.read_text()[-2500:] for p in workdir.glob("pods/default/*/log.txt")}
    assert result.returncode == 0, (result.stderr[-2000:], logs)
    status = json.loads(result.stdout)["status"]
    assert status["phase"] == "Succeeded" and status["progress"]["step"] == 2
    pods = sorted(workdir.glob("pods/default/two-nodes-trainer-*"))
    assert len(pods) == 2, pods
    ranks = {p.name: p.joinpath("log.txt").read_text() for p in pods}
    assert all("joined the process group (gloo" in log for log in ranks.values()), logs
    # one set of artifacts: rank 0's pod has the adapter and the metrics, rank 1's has neither
    finals = [p for p in pods if (p / "volumes/work/output/final/adapter_model.safetensors").is_file()]
    metrics = [p for p in pods if (p / "volumes/work/output/metrics.jsonl").is_file()]
    assert len(finals) == 1 and finals == metrics, (finals, metrics)
    assert "rank 0 of 2" in ranks[finals[0].name]
